//! Who sees and who may change which image: IMGAPI's `?account=` and
//! `?channel=` rules (sdc-imgapi `lib/images.js` `reqGetImage`,
//! `reqEnsureAccountIsImageOwner`, `apiListImages`; `lib/channels.js`
//! `reqChannel`). The rules live here once; each dialect only parses its
//! parameters into a [`Scope`].
//!
//! - An account sees its own images (any state), and other owners' images
//!   once they are activated (active or disabled) and either public or
//!   shared with it through `acl`. Anything else answers exactly as a
//!   missing image does (404 `ResourceNotFound`), so nothing leaks.
//! - Only the owner may change an image: another account that can see it
//!   gets 422 `NotImageOwner`.
//! - With channels configured, a request looks in one channel (the default
//!   one when it names none; `*` means every channel where IMGAPI allows
//!   it); an image outside that channel is 404 as well. An image that has
//!   no `channels` (stored before channels were configured) is in the
//!   default channel.
//! - A request without `account` is an operator's and sees everything.
//!
//! The service's scoped use cases apply these rules in `scoped.rs`.

use crate::error::{Error, Result};
use crate::manifest::FieldError;
use crate::store::meta::Fields;

/// The channel a request is confined to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    /// Whether `name` is the configured default (then an image without
    /// `channels` is in it).
    pub is_default: bool,
}

/// What a request may see: its account (`None`: an operator) and the
/// channel it looks in (`None`: no channels configured, or `*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub account: Option<String>,
    pub channel: Option<Channel>,
}

/// Whether the image's state means IMGAPI's `activated` (the state is
/// derived from it: see `service::images`).
fn activated(f: &Fields) -> bool {
    matches!(f.state.as_deref(), Some("active" | "disabled"))
}

/// Whether `account` may see the image: it owns it, or the image is
/// activated and public or shared with it.
pub fn visible_to(f: &Fields, account: &str) -> bool {
    f.owner.as_deref() == Some(account)
        || (activated(f) && (f.public == Some(true) || f.acl.iter().any(|a| a == account)))
}

/// ListImages' form of [`visible_to`]: IMGAPI lists other owners' images
/// only for the `state` filters that can match an activated, enabled image
/// (`active`, `all`, and the placeholder states, which then match nothing);
/// `state=disabled` and `state=unactivated` list the account's own images
/// only. `state` is the filter (`None` for `all`).
pub fn listed_for(f: &Fields, account: &str, state: Option<&str>) -> bool {
    f.owner.as_deref() == Some(account)
        || (!matches!(state, Some("disabled" | "unactivated")) && visible_to(f, account))
}

/// The channels an image is in (`default` when it names none).
pub fn channels_of(f: &Fields, default: &str) -> Vec<String> {
    f.channels
        .clone()
        .unwrap_or_else(|| vec![default.to_string()])
}

/// Whether the image is in `channel`.
pub fn in_channel(f: &Fields, channel: &Channel) -> bool {
    match &f.channels {
        Some(list) => list.contains(&channel.name),
        None => channel.is_default,
    }
}

/// Whether the image is in `scope` (its channel and its account's view).
pub fn in_scope(f: &Fields, scope: &Scope) -> bool {
    scope.channel.as_ref().is_none_or(|c| in_channel(f, c))
        && scope.account.as_deref().is_none_or(|a| visible_to(f, a))
}

/// `ValidationFailed` for an unknown channel, as IMGAPI words it.
pub fn unknown_channel(name: &str) -> Error {
    Error::Validation(
        format!("unknown channel: {name}"),
        vec![FieldError {
            field: "channel".into(),
            code: "Invalid".into(),
            message: format!("unknown channel: {name}"),
        }],
    )
}

/// IMGAPI's operator-only endpoints (AdminImportImage, import-remote)
/// refuse a request that carries an account.
///
/// # Errors
/// `OperatorOnly` (403).
pub fn check_operator(scope: &Scope) -> Result<()> {
    if scope.account.is_some() {
        return Err(Error::OperatorOnly(
            "this endpoint may only be called by an operator (the request has ?account=)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "11111111-1111-4111-8111-111111111111";
    const OTHER: &str = "22222222-2222-4222-8222-222222222222";

    fn f(owner: &str, state: &str, public: bool, acl: &[&str]) -> Fields {
        Fields {
            owner: Some(owner.into()),
            state: Some(state.into()),
            public: Some(public),
            acl: acl.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// The visibility table of `reqGetImage`.
    #[test]
    fn who_sees_what() {
        let table = [
            (f(ME, "unactivated", false, &[]), true),
            (f(ME, "disabled", false, &[]), true),
            (f(OTHER, "active", true, &[]), true),
            (f(OTHER, "disabled", true, &[]), true),
            (f(OTHER, "unactivated", true, &[]), false),
            (f(OTHER, "creating", true, &[ME]), false),
            (f(OTHER, "active", false, &[]), false),
            (f(OTHER, "active", false, &[ME]), true),
            (f(OTHER, "unactivated", false, &[ME]), false),
        ];
        for (fields, seen) in table {
            assert_eq!(visible_to(&fields, ME), seen, "{fields:?}");
        }
        // ListImages: state=disabled lists only one's own.
        let public_disabled = f(OTHER, "disabled", true, &[]);
        assert!(listed_for(&public_disabled, ME, None));
        assert!(!listed_for(&public_disabled, ME, Some("disabled")));
        assert!(listed_for(
            &f(ME, "disabled", false, &[]),
            ME,
            Some("disabled")
        ));
    }

    #[test]
    fn channel_membership() {
        let dev = Channel {
            name: "dev".into(),
            is_default: false,
        };
        let rel = Channel {
            name: "release".into(),
            is_default: true,
        };
        let none = Fields::default();
        assert!(in_channel(&none, &rel) && !in_channel(&none, &dev));
        let both = Fields {
            channels: Some(vec!["dev".into()]),
            ..Default::default()
        };
        assert!(in_channel(&both, &dev) && !in_channel(&both, &rel));
        assert_eq!(channels_of(&none, "release"), ["release"]);
    }
}
