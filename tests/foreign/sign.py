#!/usr/bin/env python3
"""Independent signers in Python, the way Tencent's samples and common code build `original`.

Prints one JSON object per line: producer, secretKey, args (decoded values), signature.
Usage: sign.py SEED COUNT NOW
"""
import base64
import hashlib
import hmac
import json
import random
import sys
import urllib.parse

ALPHABET = (
    "abcXYZ019 -_.~!*'()&=+%#?/:;,\"{}[]<>|\\^`@$"
    "名字视频上传テスト한국어éü€"
    "\U0001F600\U0001F3AC"
)


def text(rng, max_len):
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, max_len)))


def make_args(rng, now):
    validity = rng.choice([1, 60, 600, 86400, 7776000])
    args = {
        "secretId": "AKID" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(32)),
        "currentTimeStamp": now,
        "expireTime": now + validity,
        "random": rng.randint(0, 2**32 - 1),
    }
    if rng.random() < 0.6:
        args["classId"] = rng.randint(0, 10**6)
    if rng.random() < 0.6:
        args["procedure"] = rng.choice(["", "QCVB_SimpleProcessFile({1,1,1,1})", "content_review", text(rng, 30)])
        if rng.random() < 0.5:
            args["taskPriority"] = rng.randint(-10, 10)
        if rng.random() < 0.5:
            args["taskNotifyMode"] = rng.choice(["Finish", "Change", "None"])
    if rng.random() < 0.7:
        args["sourceContext"] = text(rng, 80)
    if rng.random() < 0.5:
        args["oneTimeValid"] = rng.randint(0, 1)
    if rng.random() < 0.5:
        args["vodSubAppId"] = rng.randint(1, 2**40)
    if rng.random() < 0.5:
        args["sessionContext"] = text(rng, 300)
    if rng.random() < 0.3:
        args["storageRegion"] = rng.choice(["ap-chongqing", "ap-guangzhou", "na-siliconvalley"])
    return args


def alnum_only(args):
    """The official Python/Go samples concatenate without encoding: only safe values work."""
    out = {}
    for k, v in args.items():
        if isinstance(v, str) and not v.replace("_", "").replace("-", "").isalnum():
            continue
        if isinstance(v, str) and not v.isascii():
            continue
        out[k] = v
    return out


def original_for(producer, args):
    if producer == "python-urlencode":  # Tencent's SCF demo: quote_plus, space as '+'
        return urllib.parse.urlencode(args)
    if producer == "python-quote-rfc3986":  # C#'s Uri.EscapeDataString behaves like this
        return "&".join(f"{k}={urllib.parse.quote(str(v), safe='-_.~')}" for k, v in args.items())
    if producer == "python-concat":  # the official Python sample: no encoding at all
        return "&".join(f"{k}={v}" for k, v in args.items())
    if producer == "go-values-encode":  # Go url.Values.Encode(): keys sorted, QueryEscape
        return "&".join(
            f"{urllib.parse.quote_plus(k, safe='~')}={urllib.parse.quote_plus(str(v), safe='~')}"
            for k, v in sorted(args.items())
        )
    raise ValueError(producer)


def main():
    seed, count, now = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    for producer in ["python-urlencode", "python-quote-rfc3986", "python-concat", "go-values-encode"]:
        for _ in range(count):
            args = make_args(rng, now)
            if producer == "python-concat":
                args = alnum_only(args)
            key = text(rng, 40) or "k"
            original = original_for(producer, args)
            mac = hmac.new(key.encode("utf-8"), original.encode("utf-8"), hashlib.sha1).digest()
            signature = base64.b64encode(mac + original.encode("utf-8")).decode("ascii")
            print(json.dumps({"producer": producer, "secretKey": key, "args": args, "signature": signature}, ensure_ascii=False))


if __name__ == "__main__":
    main()
