#!/usr/bin/env node
// Independent signers in Node.js: the seed sample's querystring, URLSearchParams and
// encodeURIComponent. One JSON object per line: producer, secretKey, args, signature.
// Usage: node sign.js SEED COUNT NOW
'use strict';
const crypto = require('crypto');
const querystring = require('querystring');

const ALPHABET = Array.from(
  "abcXYZ019 -_.~!*'()&=+%#?/:;,\"{}[]<>|\\^`@$名字视频上传テスト한국어éü€\u{1F600}\u{1F3AC}");

function rngFrom(seed) {
  // mulberry32: small, seedable, plenty for test inputs.
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function main() {
  const [seed, count, now] = process.argv.slice(2).map(Number);
  const rnd = rngFrom(seed);
  const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = (xs) => xs[int(0, xs.length - 1)];
  const text = (max) => Array.from({ length: int(0, max) }, () => pick(ALPHABET)).join('');

  const producers = {
    'node-querystring': (args) => querystring.stringify(args),
    'node-urlsearchparams': (args) => new URLSearchParams(
      Object.entries(args).map(([k, v]) => [k, String(v)])).toString(),
    'node-encodeuricomponent': (args) => Object.entries(args)
      .map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`).join('&'),
  };
  for (const [producer, build] of Object.entries(producers)) {
    for (let i = 0; i < count; i++) {
      const validity = pick([1, 60, 600, 86400, 7776000]);
      const args = {
        secretId: 'AKID' + text(0) + int(1, 1e9),
        currentTimeStamp: now,
        expireTime: now + validity,
        // Math.floor over [0, 2^32): the seed sample's Math.round can reach 2^32 (out of range).
        random: Math.floor(rnd() * 4294967296),
      };
      if (rnd() < 0.6) args.procedure = pick(['', 'QCVB_SimpleProcessFile({1,1,1,1})', text(30)]);
      if (args.procedure && rnd() < 0.5) args.taskPriority = int(-10, 10);
      if (args.procedure && rnd() < 0.5) args.taskNotifyMode = pick(['Finish', 'Change', 'None']);
      if (rnd() < 0.6) args.classId = int(0, 1e6);
      if (rnd() < 0.5) args.oneTimeValid = int(0, 1);
      if (rnd() < 0.7) args.sourceContext = text(80);
      if (rnd() < 0.5) args.vodSubAppId = int(1, 2 ** 40);
      if (rnd() < 0.5) args.sessionContext = text(300);
      if (rnd() < 0.3) args.storageRegion = pick(['ap-chongqing', 'ap-guangzhou']);
      const key = text(40) || 'k';
      const original = Buffer.from(build(args), 'utf8');
      const mac = crypto.createHmac('sha1', key).update(original).digest();
      const signature = Buffer.concat([mac, original]).toString('base64');
      console.log(JSON.stringify({ producer, secretKey: key, args, signature }));
    }
  }
}

main();
