#!/usr/bin/env bash
# Downloads the reference data of unlearn-bench from its public sources into the data
# directory (${UNLEARN_DATA_DIR:-data}), in the layout the harness reads, and verifies the
# sha256 sums of the files that have one (the list in the data README). Idempotent: a file
# already present with the right content is not downloaded again.
#
#   scripts/fetch-data.sh                 download what is missing, verify everything
#   scripts/fetch-data.sh --verify-only   download nothing; check presence and checksums
#   scripts/fetch-data.sh --force         download every file again
#   scripts/fetch-data.sh --with-toxigen-annotated
#                                         also fetch ToxiGen's 940-row annotated test split
#                                         (toxigen/annotated_test.csv or .parquet; the HF
#                                         dataset is gated: accept its terms and set HF_TOKEN)
#   scripts/fetch-data.sh --with-tofu     also fetch TOFU (HF dataset locuslab/TOFU, its JSON-lines
#                                         files) into tofu/, for world.kind = "tofu"
#   scripts/fetch-data.sh --with-muse     also fetch MUSE-Books (HF dataset muse-bench/MUSE-Books,
#                                         Parquet) into muse-books/parquet/ and write the JSON/text
#                                         layout of MUSE's load_data.py into muse-books/, for
#                                         world.kind = "muse" (needs python3 with pyarrow)
#   scripts/fetch-data.sh --with-restor   also fetch RESTOR (GitHub k1rezaei/restor, datasets/: facts.json,
#                                         entities.json, wikidata/v0/mix_a0..a5.json, SQuAD/) into
#                                         restor/, names kept, and TOFU (its clean data), for
#                                         world.kind = "restor"
#   scripts/fetch-data.sh [options] DIR   use DIR instead of ${UNLEARN_DATA_DIR:-data}
#
# Sources (licenses in brackets):
#   truthfulqa/           GitHub sylinrl/TruthfulQA, data/v0/ [Apache-2.0]
#   toxigen/prompts/      GitHub microsoft/TOXIGEN, prompts/ [MIT; data CDLA-Permissive-2.0]
#   toxigen/safenlp_toxigen.json
#                         GitHub microsoft/SafeNLP, data/toxiGen.json [MIT]
#   corpora/tinyshakespeare.txt
#                         GitHub karpathy/char-rnn, data/tinyshakespeare/input.txt
#   corpora/wikitext2-{valid,test}.txt
#                         GitHub pytorch/examples, word_language_model/data/wikitext-2/ [CC BY-SA 3.0]
#   corpora/tinystories-prefix.txt
#                         the first stories of TinyStories V1 (HF roneneldan/TinyStories,
#                         TinyStories-train.txt) with the <|endoftext|> separator lines
#                         blanked, cut at 197,290 bytes [CDLA-Sharing-1.0]. A reconstruction:
#                         a checksum mismatch of this file is a warning, not an error (the
#                         harness only uses it as general text; the world's hash follows it).
#   models/stories260K/   HF karpathy/tinyllamas, stories260K/ [MIT]
#   tofu/                 HF datasets/locuslab/TOFU, resolve/main/*.json [MIT] (--with-tofu)
#   muse-books/           HF datasets/muse-bench/MUSE-Books, resolve/main/CONFIG/SPLIT-00000-of-00001.parquet
#                         [CC-BY-4.0], converted by scripts/muse-parquet-to-json.py (--with-muse)
#   restor/               GitHub k1rezaei/restor at commit 15292e5, datasets/ [MIT] (--with-restor)
#
# Exit status: 0 when every required file is present and every checksum matches; 1 otherwise.
# Needs bash, curl (or wget), and sha256sum (or shasum).

set -euo pipefail

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; }

VERIFY_ONLY=0
FORCE=0
TOXIGEN_ANNOTATED=0
TOFU=0
MUSE=0
RESTOR=0
DEST="${UNLEARN_DATA_DIR:-data}"
while [ $# -gt 0 ]; do
    case "$1" in
        --verify-only) VERIFY_ONLY=1 ;;
        --force) FORCE=1 ;;
        --with-toxigen-annotated) TOXIGEN_ANNOTATED=1 ;;
        --with-tofu) TOFU=1 ;;
        --with-muse) MUSE=1 ;;
        --with-restor) RESTOR=1; TOFU=1 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "fetch-data.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) DEST="$1" ;;
    esac
    shift
done

GH=https://raw.githubusercontent.com
HF=https://huggingface.co

# ---------------------------------------------------------------- what to fetch
# Every line: RELATIVE_PATH SHA256_OR_- KIND URL [URL...]
# KIND: strict (a checksum mismatch is an error), recon (reconstructed: mismatch warns),
#       plain (no known checksum: presence only).
MANIFEST="$(cat <<EOF
truthfulqa/mc_task.json 131e6f4156297bee09b38279e2fa847e4359c200504eca99ea3fab4b2d3a6144 strict $GH/sylinrl/TruthfulQA/main/data/v0/mc_task.json $GH/sylinrl/TruthfulQA/main/data/mc_task.json
truthfulqa/TruthfulQA.csv f4fcc4a841d4474c46a4719c295c6df5f12eef14c187fbb9637a29e70d9ece00 strict $GH/sylinrl/TruthfulQA/main/data/v0/TruthfulQA.csv $GH/sylinrl/TruthfulQA/main/TruthfulQA.csv
truthfulqa/LICENSE - plain $GH/sylinrl/TruthfulQA/main/LICENSE
toxigen/safenlp_toxigen.json 42863b997f545833b8c9bfe7fc950aeaccc274d49f7386384db147face745fc3 strict $GH/microsoft/SafeNLP/main/data/toxiGen.json $GH/microsoft/SafeNLP/master/data/toxiGen.json
toxigen/LICENSE-SafeNLP-MIT.txt - plain $GH/microsoft/SafeNLP/main/LICENSE $GH/microsoft/SafeNLP/master/LICENSE
toxigen/LICENSE-TOXIGEN-MIT.txt - plain $GH/microsoft/TOXIGEN/main/LICENSE $GH/microsoft/TOXIGEN/master/LICENSE
corpora/tinyshakespeare.txt 86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed strict $GH/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
corpora/wikitext2-valid.txt f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8 strict $GH/pytorch/examples/main/word_language_model/data/wikitext-2/valid.txt
corpora/wikitext2-test.txt d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0 strict $GH/pytorch/examples/main/word_language_model/data/wikitext-2/test.txt
corpora/tinystories-prefix.txt 727e8b228375be3075114c20729c93ed6e81ae5d8fe7faf7cb54b304f0322d70 recon $HF/datasets/roneneldan/TinyStories/resolve/main/TinyStories-train.txt
models/stories260K/stories260K.bin b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696 strict $HF/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin
models/stories260K/tok512.bin 037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312 strict $HF/karpathy/tinyllamas/resolve/main/stories260K/tok512.bin
EOF
)"
for group in asian bisexual black chinese immigrant jewish latino lgbtq mental_disability mexican \
             middle_east muslim native_american physical_disability trans women; do
    MANIFEST+=$'\n'"toxigen/prompts/hate_${group}_1k.txt - plain $GH/microsoft/TOXIGEN/main/prompts/hate_${group}_1k.txt"
    # ToxiGen has no neutral prompts about trans people
    if [ "$group" != trans ]; then
        MANIFEST+=$'\n'"toxigen/prompts/neutral_${group}_1k.txt - plain $GH/microsoft/TOXIGEN/main/prompts/neutral_${group}_1k.txt"
    fi
done

# RESTOR (Rezaei et al. 2024): the datasets/ folder of the GitHub repo at a fixed commit, names
# kept without the datasets/ prefix. Checksums pinned for the files read at that commit
# (mix_a4/mix_a5 were not, so they are checked for presence only). --with-restor also sets
# --with-tofu: the restor world's clean data is TOFU (crates/testbed/src/restor.rs).
RESTOR_RAW=$GH/k1rezaei/restor/15292e58ccec7c82a14b4e05a94db06fc9689d97
if [ "$RESTOR" = 1 ]; then
    MANIFEST+="$(cat <<EOF

restor/facts.json fd0cfbd37c02d6ed0a6a8ee63a879028b51e8dbc82f2637d8dc29a99f8ee23a8 strict $RESTOR_RAW/datasets/facts.json
restor/entities.json 3b225b6e47e76cb917a08dce176cb9206784dac8966a9fdad7f743d9d2720d45 strict $RESTOR_RAW/datasets/entities.json
restor/wikidata/v0/mix_a0.json f0f58ed457c1fad2e183caddddded95924d8d446de9edbe440690e82966f21f8 strict $RESTOR_RAW/datasets/wikidata/v0/mix_a0.json
restor/wikidata/v0/mix_a1.json c6e2c168bb16d15dc914d7ed00152a986d6dce3da2ba5f8a54a40e959af6065d strict $RESTOR_RAW/datasets/wikidata/v0/mix_a1.json
restor/wikidata/v0/mix_a2.json 4518c93b864092dbe7afec4cbfbbad25b8a704b46d88e654eab5c7002cc77fbf strict $RESTOR_RAW/datasets/wikidata/v0/mix_a2.json
restor/wikidata/v0/mix_a3.json caa8adb817c02d19c6d6dee57b0f9cff5eeea6c02f38a750f4360211d757b931 strict $RESTOR_RAW/datasets/wikidata/v0/mix_a3.json
restor/wikidata/v0/mix_a4.json - plain $RESTOR_RAW/datasets/wikidata/v0/mix_a4.json
restor/wikidata/v0/mix_a5.json - plain $RESTOR_RAW/datasets/wikidata/v0/mix_a5.json
restor/SQuAD/squad_v7_dset.json fb3ee2c4664fe73759980ad130c2d7775fe0c38b74affa4c9448710f21bb8209 strict $RESTOR_RAW/datasets/SQuAD/squad_v7_dset.json
restor/LICENSE - plain $RESTOR_RAW/LICENSE
EOF
)"
fi

# TOFU (Maini et al. 2024): every split of the dataset repo, as published (JSON lines despite
# the .json name). No checksums are pinned: the repo has been revised (holdout files renamed
# in 2025); the world records the sha256 of each file it reads.
if [ "$TOFU" = 1 ]; then
    for split in full forget01 forget05 forget10 retain90 retain95 retain99 \
                 forget01_perturbed forget05_perturbed forget10_perturbed retain_perturbed \
                 real_authors real_authors_perturbed world_facts world_facts_perturbed \
                 holdout01 holdout05 holdout10; do
        MANIFEST+=$'\n'"tofu/${split}.json - plain $HF/datasets/locuslab/TOFU/resolve/main/${split}.json"
    done
fi

# MUSE-Books (Shi et al. 2024): the Hub publishes Parquet only, one file per config and split;
# the JSON/text files the harness reads are written from them after the download (below), as
# MUSE's load_data.py writes data/books/. No checksums pinned (the repo has been revised); the
# world records the sha256 of each file it reads.
MUSE_SPLITS="knowmem/forget_qa knowmem/retain_qa knowmem/forget_qa_icl knowmem/retain_qa_icl
verbmem/forget privleak/forget privleak/retain privleak/holdout
raw/forget raw/holdout raw/retain1 raw/retain2"
if [ "$MUSE" = 1 ]; then
    for cs in $MUSE_SPLITS; do
        MANIFEST+=$'\n'"muse-books/parquet/${cs}-00000-of-00001.parquet - plain $HF/datasets/muse-bench/MUSE-Books/resolve/main/${cs}-00000-of-00001.parquet"
    done
fi

# Bytes of the TinyStories prefix, and how much of TinyStories-train.txt to request for it.
TINYSTORIES_BYTES=197290
TINYSTORIES_RANGE=0-1048575

# ---------------------------------------------------------------- helpers
sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

# download URL OUT [RANGE]: one URL to OUT; HF_TOKEN is sent to huggingface.co when set.
download() {
    local url="$1" out="$2" range="${3:-}"
    local auth=()
    if [ -n "${HF_TOKEN:-}" ] && [[ "$url" == "$HF"/* ]]; then
        auth=(-H "Authorization: Bearer $HF_TOKEN")
    fi
    if command -v curl >/dev/null 2>&1; then
        local r=()
        [ -n "$range" ] && r=(-r "$range")
        curl -fsSL --retry 3 --connect-timeout 20 ${auth[@]+"${auth[@]}"} ${r[@]+"${r[@]}"} -o "$out" "$url"
    elif command -v wget >/dev/null 2>&1; then
        local h=()
        [ -n "${HF_TOKEN:-}" ] && [[ "$url" == "$HF"/* ]] && h=(--header "Authorization: Bearer $HF_TOKEN")
        [ -n "$range" ] && h+=(--header "Range: bytes=$range")
        wget -q --tries=3 ${h[@]+"${h[@]}"} -O "$out" "$url"
    else
        echo "fetch-data.sh: needs curl or wget" >&2
        return 1
    fi
}

# The TinyStories prefix from the head of TinyStories-train.txt: CRs dropped, every
# <|endoftext|> line blanked, the first $TINYSTORIES_BYTES bytes kept.
make_tinystories_prefix() {
    local raw="$1" out="$2"
    tr -d '\r' <"$raw" | sed 's/^<|endoftext|>$//' | head -c "$TINYSTORIES_BYTES" >"$out"
}

# state REL SUM KIND: prints ok | missing | mismatch | unverified
state() {
    local rel="$1" sum="$2" kind="$3" f="$DEST/$1"
    if [ ! -s "$f" ]; then echo missing; return; fi
    if [ "$sum" = - ]; then echo unverified; return; fi
    if [ "$(sha256_of "$f")" = "$sum" ]; then echo ok; else echo mismatch; fi
}

# fetch REL SUM KIND URL...: download into a .part file, check, then rename into place.
fetch() {
    local rel="$1" sum="$2" kind="$3"
    shift 3
    local f="$DEST/$rel" part="$DEST/$rel.part" url got
    mkdir -p "$(dirname "$f")"
    for url in "$@"; do
        rm -f "$part" "$part.raw"
        if [ "$kind" = recon ]; then
            download "$url" "$part.raw" "$TINYSTORIES_RANGE" || continue
            make_tinystories_prefix "$part.raw" "$part"
            rm -f "$part.raw"
        else
            download "$url" "$part" || continue
        fi
        if [ ! -s "$part" ]; then
            continue
        fi
        if [ "$sum" != - ]; then
            got="$(sha256_of "$part")"
            if [ "$got" != "$sum" ]; then
                if [ "$kind" = recon ]; then
                    echo "warning: $rel was rebuilt from $url but its sha256 is $got, not $sum (the reconstruction differs from the reference copy; kept)" >&2
                else
                    echo "warning: $url has sha256 $got, expected $sum; trying the next source" >&2
                    continue
                fi
            fi
        fi
        mv -f "$part" "$f"
        echo "fetched $rel"
        return 0
    done
    rm -f "$part" "$part.raw"
    echo "error: could not fetch $rel (tried: $*)" >&2
    return 1
}

# ---------------------------------------------------------------- main
if [ "$VERIFY_ONLY" = 0 ]; then
    mkdir -p "$DEST"
fi
echo "data directory: $DEST"
failures=0
while read -r rel sum kind urls; do
    [ -z "$rel" ] && continue
    s="$(state "$rel" "$sum" "$kind")"
    if [ "$VERIFY_ONLY" = 0 ] && { [ "$FORCE" = 1 ] || [ "$s" = missing ] || { [ "$s" = mismatch ] && [ "$kind" != recon ]; }; }; then
        # shellcheck disable=SC2086  # the URL list is split on purpose
        if fetch "$rel" "$sum" "$kind" $urls; then
            s="$(state "$rel" "$sum" "$kind")"
        fi
    fi
    case "$s" in
        ok) echo "ok          $rel" ;;
        unverified) echo "present     $rel (no checksum)" ;;
        missing) echo "MISSING     $rel" ; failures=$((failures + 1)) ;;
        mismatch)
            if [ "$kind" = recon ]; then
                echo "differs     $rel (a reconstruction; see the note at the top of this script)"
            else
                echo "MISMATCH    $rel (sha256 $(sha256_of "$DEST/$rel"), expected $sum)"
                failures=$((failures + 1))
            fi
            ;;
    esac
done <<<"$MANIFEST"

# ToxiGen's annotated test split, as lm-evaluation-harness's `toxigen` task reads it (HF
# dataset skg/toxigen-data, config "annotated", split "test", 940 rows; now also published as
# toxigen/toxigen-data). Optional: the harness falls back to safenlp_toxigen.json.
if [ "$TOXIGEN_ANNOTATED" = 1 ]; then
    if [ -s "$DEST/toxigen/annotated_test.csv" ] || [ -s "$DEST/toxigen/annotated_test.parquet" ]; then
        echo "present     toxigen/annotated_test (no checksum)"
    elif [ "$VERIFY_ONLY" = 1 ]; then
        echo "MISSING     toxigen/annotated_test.csv"
        failures=$((failures + 1))
    else
        mkdir -p "$DEST/toxigen"
        if fetch toxigen/annotated_test.csv - plain \
            "$HF/datasets/skg/toxigen-data/resolve/main/annotated_test.csv" \
            "$HF/datasets/toxigen/toxigen-data/resolve/main/annotated_test.csv"; then
            :
        elif fetch toxigen/annotated_test.parquet - plain \
            "$HF/datasets/toxigen/toxigen-data/resolve/main/annotated/test-00000-of-00001.parquet" \
            "$HF/datasets/skg/toxigen-data/resolve/refs%2Fconvert%2Fparquet/annotated/test/0000.parquet"; then
            :
        else
            echo "hint: the ToxiGen dataset is gated on Hugging Face; accept its terms and export HF_TOKEN" >&2
            failures=$((failures + 1))
        fi
    fi
fi

# MUSE-Books: the JSON/text layout from the downloaded Parquet files (python3 + pyarrow).
if [ "$MUSE" = 1 ]; then
    muse_missing=0
    for cs in $MUSE_SPLITS; do
        [ -s "$DEST/muse-books/$cs.json" ] || muse_missing=1
    done
    if [ "$VERIFY_ONLY" = 0 ] && { [ "$FORCE" = 1 ] || [ "$muse_missing" = 1 ]; }; then
        if python3 "$(dirname "$0")/muse-parquet-to-json.py" "$DEST/muse-books/parquet" "$DEST/muse-books"; then
            muse_missing=0
        else
            echo "error: could not convert MUSE-Books' Parquet files (needs python3 with pyarrow: pip install pyarrow)" >&2
        fi
    fi
    for cs in $MUSE_SPLITS; do
        if [ -s "$DEST/muse-books/$cs.json" ]; then
            echo "present     muse-books/$cs.json (no checksum)"
        else
            echo "MISSING     muse-books/$cs.json"
            failures=$((failures + 1))
        fi
    done
fi

if [ "$failures" -gt 0 ]; then
    echo "$failures file(s) missing or wrong in $DEST" >&2
    exit 1
fi
echo "all files present and verified in $DEST"
