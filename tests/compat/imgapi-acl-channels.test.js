// Compatibility test, ACLs, accounts and channels: drive an imgstore daemon
// configured with channels (dev, and release as the default) with the real
// IMGAPI client library (npm "sdc-clients", lib/imgapi.js), calling its
// methods as Triton tooling does: listChannels, channelAddImage,
// addImageAcl, removeImageAcl, cloneImage, and getImage/listImages/
// deleteImage with an account and a channel (per call, and set on the
// client as `new IMGAPI({..., channel})`).
//
// Run:   IMGSTORE_SOCKET=/path/to/imgstore.sock node --test imgapi-acl-channels.test.js
//        against a daemon whose config has
//          [[channels]] name = "dev", description = "development builds"
//          [[channels]] name = "release", description = "release builds", default = true
//        (tests/integration/compat.rs starts one). Without IMGSTORE_SOCKET
//        every test is skipped.
//
// The steps depend on each other and run in order; a failed step makes the
// later ones fail fast with "previous step failed".
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const IMGAPI = require('sdc-clients').IMGAPI;
const {SOCK, SKIP, STEP, RUN, UUID_RE, callOn} = require('./common');


const OWNER = crypto.randomUUID();
const FRIEND = crypto.randomUUID();
const STRANGER = crypto.randomUUID();
const NAME = `imgstore-compat-acl-${RUN}`;

let client; // no channel: the server's default (release)
let devClient; // new IMGAPI({..., channel: 'dev'})
let tmpDir;
let filePath;
let fileSha1;
let shared; // OWNER's private image in release, shared with FRIEND
let devImage; // an image in the dev channel
let clone; // FRIEND's clone of `shared`
const created = [];

const call = (method, ...args) => callOn(client, method, ...args);

function notFound(err) {
  assert.equal(err.statusCode, 404);
  assert.equal(err.restCode, 'ResourceNotFound');
  assert.equal(err.body.code, 'ResourceNotFound');
  return true;
}

function need(v, what) {
  assert.ok(v && v.uuid, `previous step failed: no ${what}`);
}

async function makeImage(c, name, account) {
  const [img] = await callOn(c, 'createImage', {
    name, version: '1.0.0', type: 'zone-dataset', os: 'smartos',
  }, account);
  created.push(img.uuid);
  await callOn(c, 'addImageFile', {
    uuid: img.uuid, file: filePath, compression: 'none', sha1: fileSha1,
  }, account);
  const [active] = await callOn(c, 'activateImage', img.uuid, account);
  return active;
}

test.before(() => {
  if (SKIP) return;
  assert.ok(fs.statSync(SOCK).isSocket(), `IMGSTORE_SOCKET=${SOCK} is not a Unix socket`);
  client = new IMGAPI({url: 'http://localhost', socketPath: SOCK});
  devClient = new IMGAPI({url: 'http://localhost', socketPath: SOCK, channel: 'dev'});
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstore-compat-acl-'));
  filePath = path.join(tmpDir, 'image.zfs');
  const data = crypto.randomBytes(64 * 1024 + 7);
  fs.writeFileSync(filePath, data);
  fileSha1 = crypto.createHash('sha1').update(data).digest('hex');
});

test.after(async () => {
  if (SKIP) return;
  if (client) {
    // Clones first (their origin chains point at the originals).
    for (const u of [clone && clone.uuid, ...created.reverse()].filter(Boolean)) {
      await call('deleteImage', u, undefined, {channel: '*', forceAllChannels: true})
        .catch(() => {});
    }
    client.close();
  }
  if (devClient) devClient.close();
  if (tmpDir) fs.rmSync(tmpDir, {recursive: true, force: true});
});

test('listChannels', STEP, async () => {
  const [channels, res] = await call('listChannels', {});
  assert.equal(res.statusCode, 200);
  assert.deepEqual(channels, [
    {name: 'dev', description: 'development builds'},
    {name: 'release', description: 'release builds', default: true},
  ]);
});

test('createImage with an account: owner and default channel', STEP, async () => {
  shared = await makeImage(client, `${NAME}-shared`, OWNER);
  assert.match(shared.uuid, UUID_RE);
  assert.equal(shared.owner, OWNER);
  assert.equal(shared.state, 'active');
  assert.equal(shared.public, false);
  assert.deepEqual(shared.channels, ['release']);
});

test('getImage/listImages with an account: private images are hidden', STEP, async () => {
  need(shared, 'image');
  const [own] = await call('getImage', shared.uuid, OWNER);
  assert.equal(own.uuid, shared.uuid);
  await assert.rejects(call('getImage', shared.uuid, FRIEND), notFound);
  const [list] = await call('listImages', {account: FRIEND, name: NAME + '-shared'});
  assert.deepEqual(list, []);
  const [mine] = await call('listImages', {account: OWNER, name: NAME + '-shared'});
  assert.deepEqual(mine.map((i) => i.uuid), [shared.uuid]);
});

test('addImageAcl shares the image', STEP, async () => {
  need(shared, 'image');
  const [img, res] = await call('addImageAcl', shared.uuid, [FRIEND, STRANGER], OWNER);
  assert.equal(res.statusCode, 200);
  assert.deepEqual(img.acl, [FRIEND, STRANGER]);
  const [seen] = await call('getImage', shared.uuid, FRIEND);
  assert.equal(seen.uuid, shared.uuid);
  const [list] = await call('listImages', {account: FRIEND, name: NAME + '-shared'});
  assert.deepEqual(list.map((i) => i.uuid), [shared.uuid]);
});

test('addImageAcl by another account -> NotImageOwner 422', STEP, async () => {
  need(shared, 'image');
  await assert.rejects(call('addImageAcl', shared.uuid, [FRIEND], FRIEND), (err) => {
    assert.equal(err.statusCode, 422);
    assert.equal(err.restCode, 'NotImageOwner');
    return true;
  });
});

test('removeImageAcl unshares', STEP, async () => {
  need(shared, 'image');
  const [img] = await call('removeImageAcl', shared.uuid, [STRANGER], OWNER);
  assert.deepEqual(img.acl, [FRIEND]);
  await assert.rejects(call('getImage', shared.uuid, STRANGER), notFound);
});

test('cloneImage for an account on the ACL', STEP, async () => {
  need(shared, 'image');
  const [img, res] = await call('cloneImage', shared.uuid, FRIEND);
  assert.equal(res.statusCode, 200);
  assert.match(img.uuid, UUID_RE);
  assert.notEqual(img.uuid, shared.uuid);
  assert.equal(img.owner, FRIEND);
  assert.equal(img.state, 'active');
  assert.equal(img.acl, undefined);
  assert.equal(img.name, shared.name);
  assert.equal(img.files[0].sha1, fileSha1);
  clone = img;
  const [seen] = await call('getImage', img.uuid, FRIEND);
  assert.equal(seen.owner, FRIEND);
  await assert.rejects(call('getImage', img.uuid, OWNER), notFound);
});

test('cloneImage by an account not on the ACL', STEP, async () => {
  need(shared, 'image');
  await assert.rejects(call('cloneImage', shared.uuid, STRANGER), notFound);
  const [pub] = await call('updateImage', shared.uuid, {public: true}, OWNER);
  assert.equal(pub.public, true);
  await assert.rejects(call('cloneImage', shared.uuid, STRANGER), (err) => {
    assert.equal(err.statusCode, 422);
    assert.equal(err.restCode, 'ImageNotShared');
    return true;
  });
});

test('a client on the dev channel creates into dev', STEP, async () => {
  devImage = await makeImage(devClient, `${NAME}-dev`);
  assert.deepEqual(devImage.channels, ['dev']);
  const [got] = await callOn(devClient, 'getImage', devImage.uuid);
  assert.equal(got.uuid, devImage.uuid);
  await assert.rejects(call('getImage', devImage.uuid), notFound);
  const [all] = await call('getImage', devImage.uuid, undefined, {channel: '*'});
  assert.equal(all.uuid, devImage.uuid);
});

test('listImages per channel', STEP, async () => {
  need(devImage, 'dev image');
  const names = {name: `~${NAME}`};
  const uuids = (l) => l.map((i) => i.uuid).sort();
  // The clone keeps its original's channels (as IMGAPI's clone copies them).
  let [list] = await call('listImages', names);
  assert.deepEqual(uuids(list), [shared.uuid, clone.uuid].sort());
  [list] = await call('listImages', names, {channel: 'dev'});
  assert.deepEqual(uuids(list), [devImage.uuid]);
  [list] = await callOn(devClient, 'listImages', names);
  assert.deepEqual(uuids(list), [devImage.uuid]);
  [list] = await call('listImages', names, {channel: '*'});
  assert.deepEqual(uuids(list), [shared.uuid, devImage.uuid, clone.uuid].sort());
  await assert.rejects(call('listImages', names, {channel: 'nope'}), (err) => {
    assert.equal(err.statusCode, 422);
    assert.equal(err.restCode, 'ValidationFailed');
    assert.equal(err.body.errors[0].field, 'channel');
    return true;
  });
});

test('channelAddImage', STEP, async () => {
  need(devImage, 'dev image');
  const [img] = await callOn(devClient, 'channelAddImage',
    {uuid: devImage.uuid, channel: 'release'});
  assert.deepEqual(img.channels, ['dev', 'release']);
  const [got] = await call('getImage', devImage.uuid);
  assert.deepEqual(got.channels, ['dev', 'release']);
  await assert.rejects(callOn(devClient, 'channelAddImage',
    {uuid: devImage.uuid, channel: 'nope'}), (err) => {
    assert.equal(err.statusCode, 422);
    assert.equal(err.restCode, 'ValidationFailed');
    return true;
  });
});

test('deleteImage from one channel, then the last', STEP, async () => {
  need(devImage, 'dev image');
  const [res] = await callOn(devClient, 'deleteImage', devImage.uuid);
  assert.equal(res.statusCode, 204);
  await assert.rejects(callOn(devClient, 'getImage', devImage.uuid), notFound);
  const [still] = await call('getImage', devImage.uuid);
  assert.deepEqual(still.channels, ['release']);
  const [res2] = await call('deleteImage', devImage.uuid);
  assert.equal(res2.statusCode, 204);
  await assert.rejects(call('getImage', devImage.uuid, undefined, {channel: '*'}), notFound);
});
