// Shared by the compat test files (tests/compat/*.test.js): the daemon's
// socket from the environment, the options every step runs with, and a
// promise wrapper around the client's callback-style methods.
'use strict';

const crypto = require('node:crypto');

const SOCK = process.env.IMGSTORE_SOCKET;
const SKIP = SOCK ? false : 'IMGSTORE_SOCKET is not set';

/** Calls a callback-style client method on `c`; resolves with the values
 * after `err` (e.g. [image, res] or [res]); rejects with the error, which
 * gets a `res` property when the client passed one. */
function callOn(c, method, ...args) {
  return new Promise((resolve, reject) => {
    c[method](...args, (err, ...rest) => {
      if (err) {
        const res = rest.find((r) => r && typeof r.statusCode === 'number');
        if (res && !err.res) err.res = res;
        reject(err);
      } else {
        resolve(rest);
      }
    });
  });
}

module.exports = {
  SOCK,
  SKIP,
  STEP: {timeout: 60 * 1000, skip: SKIP},
  // Per-run unique names, so leftovers of an earlier run never match.
  RUN: crypto.randomBytes(4).toString('hex'),
  NIL_UUID: '00000000-0000-0000-0000-000000000000',
  UUID_RE: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
  callOn,
};
