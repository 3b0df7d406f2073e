// Compatibility test: drive an imgstore daemon with the real IMGAPI client
// library used by Triton/SmartOS tooling (npm "sdc-clients", lib/imgapi.js).
//
// Run:   IMGSTORE_SOCKET=/path/to/imgstore.sock node --test tests/compat/
//        (after `npm ci` in tests/compat).  Without IMGSTORE_SOCKET every test
//        is skipped.
//
// The client is built exactly as tooling builds it for a Unix socket:
//   new IMGAPI({url: 'http://localhost', socketPath: SOCK})
// which means: Accept-Version: *, keep-alive connections, JSON bodies with a
// Content-MD5 request header, and a Content-MD5 *response* header that must be
// present and right on GET /images/:uuid/file (the client throws without it).
//
// The steps depend on each other and run in order (node:test runs top-level
// tests of a file sequentially); a failed step makes the later ones fail fast
// with "previous step failed".
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const IMGAPI = require('sdc-clients').IMGAPI;
const {SOCK, SKIP, STEP, RUN, NIL_UUID, UUID_RE, callOn} = require('./common');

const DATE_RE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

const NAME = `imgstore-compat-${RUN}`;
const VERSION = '1.0.0';
const DESCRIPTION_NEW = `updated by imgapi-client.test.js run ${RUN}`;

let client;
let tmpDir;
let filePath;
let fileData;
let fileSha1;
let fileSha256;
let image; // the image under test, as last returned by the server
let publishedAt;
let deleted = false;

const call = (method, ...args) => callOn(client, method, ...args);

function needImage() {
  assert.ok(image && image.uuid, 'previous step failed: no image to work on');
}

test.before(() => {
  if (SKIP) return;
  let st;
  try {
    st = fs.statSync(SOCK);
  } catch (e) {
    throw new Error(`IMGSTORE_SOCKET=${SOCK}: ${e.message}`);
  }
  // Fail fast: with no listener the client retries connects for ~15 s.
  assert.ok(st.isSocket(), `IMGSTORE_SOCKET=${SOCK} is not a Unix socket`);

  client = new IMGAPI({url: 'http://localhost', socketPath: SOCK});

  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstore-compat-'));
  filePath = path.join(tmpDir, 'image.zfs');
  fileData = crypto.randomBytes(3 * 1024 * 1024 + 123); // ~3 MiB, odd size
  fs.writeFileSync(filePath, fileData);
  fileSha1 = crypto.createHash('sha1').update(fileData).digest('hex');
  fileSha256 = crypto.createHash('sha256').update(fileData).digest('hex');
});

test.after(async () => {
  if (SKIP) return;
  if (client && image && image.uuid && !deleted) {
    // Best effort cleanup after a failure half-way.
    await call('deleteImage', image.uuid).catch(() => {});
  }
  if (client) client.close();
  if (tmpDir) fs.rmSync(tmpDir, {recursive: true, force: true});
});

test('ping', STEP, async () => {
  const [pong, res] = await call('ping');
  assert.equal(res.statusCode, 200);
  assert.equal(pong.ping, 'pong');
  assert.equal(pong.imgapi, true);
  assert.equal(typeof pong.version, 'string');
});

test('createImage -> unactivated', STEP, async () => {
  const [img, res] = await call('createImage', {
    name: NAME,
    version: VERSION,
    type: 'zone-dataset',
    os: 'smartos',
    owner: NIL_UUID,
  });
  assert.ok(res.statusCode >= 200 && res.statusCode < 300, `status ${res.statusCode}`);
  assert.match(img.uuid, UUID_RE);
  assert.equal(img.v, 2);
  assert.equal(img.name, NAME);
  assert.equal(img.version, VERSION);
  assert.equal(img.type, 'zone-dataset');
  assert.equal(img.os, 'smartos');
  assert.equal(img.owner, NIL_UUID);
  assert.equal(img.state, 'unactivated');
  assert.equal(img.disabled, false);
  assert.equal(img.published_at, undefined);
  assert.equal(img.activated, undefined, '"activated" is never output');
  assert.ok(!img.files || img.files.length === 0, 'no files yet');
  image = img;
});

test('addImageFile (path, compression none, sha1 given)', STEP, async () => {
  needImage();
  const [img] = await call('addImageFile', {
    uuid: image.uuid,
    file: filePath,
    compression: 'none',
    sha1: fileSha1,
  });
  assert.equal(img.uuid, image.uuid);
  assert.equal(img.state, 'unactivated');
  assert.ok(Array.isArray(img.files) && img.files.length === 1, 'one file');
  assert.equal(img.files[0].sha1, fileSha1);
  assert.equal(img.files[0].size, fileData.length);
  assert.equal(img.files[0].compression, 'none');
  image = img;
});

test('activateImage -> active with published_at', STEP, async () => {
  needImage();
  const [img] = await call('activateImage', image.uuid);
  assert.equal(img.uuid, image.uuid);
  assert.equal(img.state, 'active');
  assert.equal(img.disabled, false);
  assert.match(img.published_at, DATE_RE);
  assert.equal(img.activated, undefined, '"activated" is never output');
  publishedAt = img.published_at;
  image = img;
});

test('getImage: fields and files[0]', STEP, async () => {
  needImage();
  const [img, res] = await call('getImage', image.uuid);
  assert.equal(res.statusCode, 200);
  assert.equal(img.uuid, image.uuid);
  assert.equal(img.v, 2);
  assert.equal(img.name, NAME);
  assert.equal(img.version, VERSION);
  assert.equal(img.type, 'zone-dataset');
  assert.equal(img.os, 'smartos');
  assert.equal(img.owner, NIL_UUID);
  assert.equal(img.state, 'active');
  assert.equal(img.disabled, false);
  assert.equal(img.published_at, publishedAt);
  assert.equal(img.files.length, 1);
  const f = img.files[0];
  assert.equal(f.sha1, fileSha1);
  assert.equal(f.size, fileData.length);
  assert.equal(f.compression, 'none');
  assert.equal(f.digest, `sha256:${fileSha256}`);
  image = img;
});

test('listImages with filters', STEP, async () => {
  needImage();
  const uuids = (list) => {
    assert.ok(Array.isArray(list), 'an array');
    return list.map((i) => i.uuid);
  };

  let [list] = await call('listImages',
    {name: NAME, os: 'smartos', type: 'zone-dataset', state: 'all'});
  assert.deepEqual(uuids(list), [image.uuid]);
  assert.equal(list[0].name, NAME);
  assert.equal(list[0].files[0].sha1, fileSha1);

  [list] = await call('listImages', {name: NAME}); // default state: active
  assert.deepEqual(uuids(list), [image.uuid]);

  [list] = await call('listImages', {name: NAME, state: 'disabled'});
  assert.deepEqual(uuids(list), []);

  [list] = await call('listImages', {name: `${NAME}-nomatch`, state: 'all'});
  assert.deepEqual(list, []);

  [list] = await call('listImages', {name: NAME, os: 'linux', state: 'all'});
  assert.deepEqual(list, []);

  [list] = await call('listImages', {name: NAME, type: 'zvol', state: 'all'});
  assert.deepEqual(list, []);

  [list] = await call('listImages', {state: 'all'});
  assert.ok(uuids(list).includes(image.uuid), 'unfiltered list has the image');
});

test('getImageFile to a path: byte for byte', STEP, async () => {
  needImage();
  // First as a stream, to report a missing Content-MD5 clearly: getImageFile
  // then dies with the cryptic assertion "undefined (string) is required"
  // (and with a ChecksumError when the header is wrong).
  const [stream] = await call('getImageFileStream', image.uuid);
  const md5Header = stream.headers['content-md5'];
  const h = crypto.createHash('sha1');
  stream.on('data', (c) => h.update(c));
  const ended = new Promise((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  stream.resume();
  await ended;
  assert.equal(stream.statusCode, 200);
  assert.ok(md5Header, 'GET /images/:uuid/file must send a Content-MD5 header');
  assert.equal(h.digest('hex'), fileSha1, 'streamed file sha1');

  const out = path.join(tmpDir, 'download.zfs');
  const [res] = await call('getImageFile', image.uuid, out);
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-md5'],
    crypto.createHash('md5').update(fileData).digest('base64'));
  assert.equal(Number(res.headers['content-length']), fileData.length);
  const got = fs.readFileSync(out);
  assert.equal(got.length, fileData.length);
  assert.ok(got.equals(fileData), 'downloaded file differs from the upload');
});

test('updateImage (description)', STEP, async () => {
  needImage();
  const [img] = await call('updateImage', image.uuid, {description: DESCRIPTION_NEW});
  assert.equal(img.uuid, image.uuid);
  assert.equal(img.description, DESCRIPTION_NEW);
  assert.equal(img.name, NAME);
  assert.equal(img.state, 'active');
  const [again] = await call('getImage', image.uuid);
  assert.equal(again.description, DESCRIPTION_NEW);
  image = img;
});

test('disableImage -> disabled', STEP, async () => {
  needImage();
  const [img] = await call('disableImage', image.uuid);
  assert.equal(img.uuid, image.uuid);
  assert.equal(img.state, 'disabled');
  assert.equal(img.disabled, true);
  const [list] = await call('listImages', {name: NAME, state: 'disabled'});
  assert.deepEqual(list.map((i) => i.uuid), [image.uuid]);
  image = img;
});

test('enableImage -> active', STEP, async () => {
  needImage();
  const [img] = await call('enableImage', image.uuid);
  assert.equal(img.uuid, image.uuid);
  assert.equal(img.state, 'active');
  assert.equal(img.disabled, false);
  assert.equal(img.published_at, publishedAt);
  image = img;
});

test('deleteImage', STEP, async () => {
  needImage();
  const [res] = await call('deleteImage', image.uuid);
  assert.ok(res.statusCode === 204 || res.statusCode === 200, `status ${res.statusCode}`);
  deleted = true;
});

test('getImage after delete -> ResourceNotFound 404', STEP, async () => {
  needImage();
  await assert.rejects(call('getImage', image.uuid), (err) => {
    assert.equal(err.statusCode, 404);
    assert.equal(err.body && err.body.code, 'ResourceNotFound');
    assert.equal(err.restCode, 'ResourceNotFound');
    assert.equal(typeof err.body.message, 'string');
    return true;
  });
});

test('createImage with an invalid manifest -> ValidationFailed 422', STEP, async () => {
  await assert.rejects(call('createImage', {
    name: `${NAME}-invalid`,
    version: VERSION,
    type: 'not-a-type',
    os: 'smartos',
    owner: NIL_UUID,
  }), (err) => {
    assert.equal(err.statusCode, 422);
    assert.equal(err.restCode, 'ValidationFailed');
    assert.equal(err.body.code, 'ValidationFailed');
    assert.equal(typeof err.body.message, 'string');
    assert.ok(Array.isArray(err.body.errors), 'body.errors is an array');
    const e = err.body.errors.find((x) => x.field === 'type');
    assert.ok(e, `errors name the field "type": ${JSON.stringify(err.body.errors)}`);
    assert.equal(e.code, 'Invalid');
    return true;
  });
  // and nothing was created
  const [list] = await call('listImages', {name: `${NAME}-invalid`, state: 'all'});
  assert.deepEqual(list, []);
});
