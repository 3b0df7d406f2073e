// Compatibility test, issue #13 slice C: conditional updates and the error
// codes as the official IMGAPI client (npm "sdc-clients", lib/imgapi.js)
// surfaces them, against a real imgstore daemon.
//
// Run:   IMGSTORE_SOCKET=/path/to/imgstore.sock node --test imgapi-conditional.test.js
//        (after `npm ci` in tests/compat). Without IMGSTORE_SOCKET every test
//        is skipped.
//
// Triton tooling passes an ETag back the way the client allows it: the
// `ETag` response header of a GetImage (or of the last write) goes into
// `options.headers['If-Match']` of updateImage/activateImage/... . A
// mismatch is a restify error with statusCode 412 and restCode/body.code
// `PreconditionFailed`.
//
// The steps depend on each other and run in order (node:test runs top-level
// tests of a file sequentially).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const IMGAPI = require('sdc-clients').IMGAPI;
const {SOCK, SKIP, STEP, RUN, NIL_UUID, callOn} = require('./common');


let client;
let tmpDir;
let filePath;
let fileSha1;
let image;
let etag;


const call = (method, ...args) => callOn(client, method, ...args);

/** Asserts a rejected call's status and code, as the client reports them:
 * `err.body.code`, and `err.restCode` from the JSON client (the file upload
 * builds its error from the body only, so `restCode: false` there). */
async function rejectsWith(promise, status, code, {restCode = true} = {}) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected a ${status} ${code} error`);
  assert.equal(err.statusCode, status, `${err.message}`);
  assert.equal(err.body && err.body.code, code, `${JSON.stringify(err.body)}`);
  if (restCode) assert.equal(err.restCode, code);
  return err;
}

function needImage() {
  assert.ok(image && image.uuid, 'previous step failed: no image to work on');
}

test.before(() => {
  if (SKIP) return;
  assert.ok(fs.statSync(SOCK).isSocket(), `IMGSTORE_SOCKET=${SOCK} is not a Unix socket`);
  client = new IMGAPI({url: 'http://localhost', socketPath: SOCK});
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstore-conditional-'));
  filePath = path.join(tmpDir, 'image.zfs');
  const data = crypto.randomBytes(64 * 1024 + 7);
  fs.writeFileSync(filePath, data);
  fileSha1 = crypto.createHash('sha1').update(data).digest('hex');
});

test.after(async () => {
  if (SKIP) return;
  if (client && image && image.uuid) {
    await call('deleteImage', image.uuid).catch(() => {});
  }
  if (client) client.close();
  if (tmpDir) fs.rmSync(tmpDir, {recursive: true, force: true});
});

test('ping with error answers that error, with a Server header', STEP, async () => {
  const err = await rejectsWith(call('ping', 'ValidationFailed'), 422, 'ValidationFailed');
  assert.ok(err.body.message);
  assert.ok(err.res.headers.server, 'Server header');
});

test('a missing field is MissingParameter', STEP, async () => {
  const err = await rejectsWith(
    call('createImage', {version: '1', type: 'zone-dataset', os: 'smartos'}),
    422, 'ValidationFailed');
  const e = err.body.errors.find((x) => x.field === 'name');
  assert.ok(e, JSON.stringify(err.body));
  assert.equal(e.code, 'MissingParameter');
});

test('createImage and getImage carry the same ETag', STEP, async () => {
  const [img, res] = await call('createImage', {
    name: `imgstore-conditional-${RUN}`, version: '1.0.0',
    type: 'zone-dataset', os: 'smartos', owner: NIL_UUID,
  });
  image = img;
  assert.deepEqual(img.files, []);
  assert.match(res.headers.etag, /^[0-9a-f]{40}$/);
  const [got, res2] = await call('getImage', img.uuid);
  assert.equal(got.uuid, img.uuid);
  assert.equal(res2.headers.etag, res.headers.etag);
  etag = res2.headers.etag;
});

test('updateImage with the current If-Match succeeds', STEP, async () => {
  needImage();
  const [img, res] = await call('updateImage', image.uuid,
    {description: 'first'}, undefined, {headers: {'If-Match': etag}});
  assert.equal(img.description, 'first');
  assert.notEqual(res.headers.etag, etag);
  const stale = etag;
  etag = res.headers.etag;
  image = img;
  image.stale = stale;
});

test('updateImage with a stale If-Match is 412 and changes nothing', STEP, async () => {
  needImage();
  await rejectsWith(
    call('updateImage', image.uuid, {description: 'lost'}, undefined,
      {headers: {'If-Match': image.stale}}),
    412, 'PreconditionFailed');
  const [got] = await call('getImage', image.uuid);
  assert.equal(got.description, 'first');
});

test('getImage with a stale If-Match is 412', STEP, async () => {
  needImage();
  await rejectsWith(
    call('getImage', image.uuid, {headers: {'If-Match': image.stale}}),
    412, 'PreconditionFailed');
});

test('addImageFile with a wrong sha1 is 400 Download', STEP, async () => {
  needImage();
  await rejectsWith(
    call('addImageFile', {
      uuid: image.uuid, file: filePath, compression: 'none',
      sha1: '0'.repeat(40),
    }),
    400, 'Download', {restCode: false});
});

test('addImageFile keeps dataset_guid; inclAdminFields shows stor', STEP, async () => {
  needImage();
  const [img] = await call('addImageFile', {
    uuid: image.uuid, file: filePath, compression: 'none', sha1: fileSha1,
    dataset_guid: '1234567890123456789',
  });
  assert.equal(img.files[0].dataset_guid, '1234567890123456789');
  assert.equal(img.files[0].stor, undefined);
  const [got, res] = await call('getImage', image.uuid, {inclAdminFields: true});
  assert.equal(got.files[0].stor, 'local');
  etag = res.headers.etag;
});

test('activateImage with a stale If-Match is 412, with the current one works',
  STEP, async () => {
    needImage();
    await rejectsWith(
      call('activateImage', image.uuid, undefined, {headers: {'If-Match': image.stale}}),
      412, 'PreconditionFailed');
    const [img] = await call('activateImage', image.uuid, undefined,
      {headers: {'If-Match': etag}});
    assert.equal(img.state, 'active');
  });

test('adminImportImage refuses extra parameters', STEP, async () => {
  const uuid = crypto.randomUUID();
  const err = await rejectsWith(
    call('adminImportImage', {
      uuid, name: 'imported', version: '1', type: 'zone-dataset',
      os: 'smartos', owner: NIL_UUID, activated: true,
    }, {}),
    422, 'InvalidParameter');
  assert.match(err.body.message, /invalid extra parameters: "activated"/);
  assert.equal(err.body.errors[0].field, 'activated');
});

test('Accept-Version: ~1 works, an unknown range is 400 InvalidVersion', STEP, async () => {
  needImage();
  const one = new IMGAPI({url: 'http://localhost', socketPath: SOCK, version: '~1'});
  const bad = new IMGAPI({url: 'http://localhost', socketPath: SOCK, version: '~99'});
  try {
    const [img] = await callOn(one, 'getImage', image.uuid);
    assert.equal(img.uuid, image.uuid);
    assert.equal(img.channels, undefined);
    await rejectsWith(callOn(bad, 'getImage', image.uuid), 400, 'InvalidVersion');
  } finally {
    one.close();
    bad.close();
  }
});

test('deleteImage', STEP, async () => {
  needImage();
  const [res] = await call('deleteImage', image.uuid);
  assert.equal(res.statusCode, 204);
  image = null;
});
