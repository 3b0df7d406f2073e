// Compatibility test, slice D of issue #13: the official IMGAPI client
// (npm "sdc-clients", lib/imgapi.js) drives an imgstore daemon through the
// icon endpoints and the operator imports from another IMGAPI, with the
// client's own methods as Triton tooling calls them:
//   addImageIcon, getImageIcon (which checks Content-MD5), deleteImageIcon,
//   adminImportImage({uuid}, {source, skipOwnerCheck}),
//   addImageFile({uuid, source}).
// (sdc-clients has no listImageJobs method.)
//
// Run:   IMGSTORE_SOCKET=/path/to/imgstore.sock \
//        IMGSTORE_SOURCE_URL=http://127.0.0.1:PORT \
//        IMGSTORE_SOURCE_IMAGE=UUID IMGSTORE_SOURCE_SHA1=HEX \
//        node --test imgapi-icons.test.js
// where the source is another imgstore's peer listener (or any IMGAPI)
// holding the active image UUID whose file has that SHA-1.
// tests/integration/compat.rs sets all of it up. Without IMGSTORE_SOCKET
// every test is skipped.
//
// The steps depend on each other and run in order.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const IMGAPI = require('sdc-clients').IMGAPI;
const {SOCK, SKIP, STEP, RUN, NIL_UUID, callOn} = require('./common');

const SOURCE_URL = process.env.IMGSTORE_SOURCE_URL;
const SOURCE_IMAGE = process.env.IMGSTORE_SOURCE_IMAGE;
const SOURCE_SHA1 = process.env.IMGSTORE_SOURCE_SHA1;

let client;
let tmpDir;
let iconPath;
let iconData;
let image; // the image that gets an icon
let imported; // the image imported from the source

const call = (method, ...args) => callOn(client, method, ...args);

function code(err) {
  return (err.body && err.body.code) || err.restCode;
}

function needImage() {
  assert.ok(image && image.uuid, 'previous step failed: no image to work on');
}

test.before(() => {
  if (SKIP) return;
  assert.ok(fs.statSync(SOCK).isSocket(), `IMGSTORE_SOCKET=${SOCK} is not a Unix socket`);
  assert.ok(SOURCE_URL && SOURCE_IMAGE && SOURCE_SHA1,
    'IMGSTORE_SOURCE_URL, IMGSTORE_SOURCE_IMAGE and IMGSTORE_SOURCE_SHA1 must be set');
  client = new IMGAPI({url: 'http://localhost', socketPath: SOCK});
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstore-compat-icons-'));
  iconPath = path.join(tmpDir, 'icon.png');
  iconData = crypto.randomBytes(4000);
  fs.writeFileSync(iconPath, iconData);
});

test.after(async () => {
  if (SKIP) return;
  for (const img of [image, imported]) {
    if (client && img && img.uuid) {
      await call('deleteImage', img.uuid).catch(() => {});
    }
  }
  if (client) client.close();
  if (tmpDir) fs.rmSync(tmpDir, {recursive: true, force: true});
});

test('createImage for the icon', STEP, async () => {
  const [img] = await call('createImage', {
    name: `imgstore-compat-icon-${RUN}`,
    version: '1.0.0',
    type: 'zone-dataset',
    os: 'smartos',
    owner: NIL_UUID,
  });
  assert.equal(img.state, 'unactivated');
  assert.equal(img.icon, undefined);
  image = img;
});

test('addImageIcon (path, image/png, sha1) -> icon: true', STEP, async () => {
  needImage();
  const sha1 = crypto.createHash('sha1').update(iconData).digest('hex');
  const [img, res] = await call('addImageIcon', {
    uuid: image.uuid,
    file: iconPath,
    contentType: 'image/png',
    sha1: sha1,
  });
  assert.equal(res.statusCode, 200);
  assert.equal(img.uuid, image.uuid);
  assert.equal(img.icon, true);
  const [got] = await call('getImage', image.uuid);
  assert.equal(got.icon, true);
});

test('getImageIcon: the bytes, Content-MD5 checked by the client', STEP, async () => {
  needImage();
  const out = path.join(tmpDir, 'got.png');
  const [res] = await call('getImageIcon', image.uuid, out);
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-type'], 'image/png');
  assert.ok(fs.readFileSync(out).equals(iconData), 'same icon bytes');
});

test('addImageIcon refusals: wrong type, over 128 KiB -> 400 Upload', STEP, async () => {
  needImage();
  await assert.rejects(call('addImageIcon', {
    uuid: image.uuid, file: iconPath, contentType: 'text/plain',
  }), (err) => {
    assert.equal(err.statusCode, 400);
    assert.equal(code(err), 'Upload');
    return true;
  });
  const big = path.join(tmpDir, 'big.png');
  fs.writeFileSync(big, crypto.randomBytes(128 * 1024 + 1));
  await assert.rejects(call('addImageIcon', {
    uuid: image.uuid, file: big, contentType: 'image/png',
  }), (err) => {
    assert.equal(err.statusCode, 400);
    assert.equal(code(err), 'Upload');
    return true;
  });
  // The icon is unchanged.
  const out = path.join(tmpDir, 'still.png');
  await call('getImageIcon', image.uuid, out);
  assert.ok(fs.readFileSync(out).equals(iconData));
});

test('deleteImageIcon -> no icon, GetImageIcon 404', STEP, async () => {
  needImage();
  const [img, res] = await call('deleteImageIcon', image.uuid);
  assert.equal(res.statusCode, 200);
  assert.equal(img.uuid, image.uuid);
  assert.equal(img.icon, undefined);
  await assert.rejects(call('getImageIcon', image.uuid, path.join(tmpDir, 'none.png')),
    (err) => {
      assert.equal(err.statusCode, 404);
      assert.equal(code(err), 'ResourceNotFound');
      return true;
    });
});

test('adminImportImage with source -> unactivated copy', STEP, async () => {
  const [img, res] = await call('adminImportImage', {uuid: SOURCE_IMAGE},
    {source: SOURCE_URL, skipOwnerCheck: true});
  assert.equal(res.statusCode, 200);
  assert.equal(img.uuid, SOURCE_IMAGE);
  assert.equal(img.state, 'unactivated');
  imported = img;
  await assert.rejects(call('adminImportImage', {uuid: SOURCE_IMAGE},
    {source: SOURCE_URL}), (err) => {
    assert.equal(err.statusCode, 409);
    assert.equal(code(err), 'ImageUuidAlreadyExists');
    return true;
  });
});

test('addImageFile with source, activate, download', STEP, async () => {
  assert.ok(imported, 'previous step failed: nothing imported');
  const [img, res] = await call('addImageFile', {uuid: SOURCE_IMAGE, source: SOURCE_URL});
  assert.equal(res.statusCode, 200);
  assert.equal(img.files.length, 1);
  assert.equal(img.files[0].sha1, SOURCE_SHA1);
  const [active] = await call('activateImage', SOURCE_IMAGE);
  assert.equal(active.state, 'active');
  const out = path.join(tmpDir, 'file.zfs');
  await call('getImageFile', SOURCE_IMAGE, out);
  const sha1 = crypto.createHash('sha1').update(fs.readFileSync(out)).digest('hex');
  assert.equal(sha1, SOURCE_SHA1);
});
