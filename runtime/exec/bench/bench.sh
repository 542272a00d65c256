#!/usr/bin/env bash
# HF -> MCA conversion speed and memory, against cp -r (issue 4, acceptance 4).
#
# Usage: runtime/exec/bench/bench.sh [SIZE_GIB ...]      (default: 2 8)
#
# For each size it generates a Llama-3-proportioned bf16 checkpoint of that
# many GiB (fixed layer shapes, more layers for a bigger model; shards of at
# most 5 GB with an index, as Hugging Face writes them), then ROUNDS times
# (default 3), alternating:
#
#   - drop the previous output, sync, warm the page cache with the input;
#   - time `cp -r SRC DST` under /usr/bin/time -v;
#   - the same, then time `rolltplc convert --quiet --from SRC --to DST`.
#
# It prints the median wall times, conversion/cp ratio (target <= 1.3; also
# against the fastest cp round, since cp's own time swings most) and the
# peak RSS /usr/bin/time reports ("Maximum resident set size", mapped input
# pages included; target <= 1 GiB and independent of model size). Last, it
# runs `rolltplc verify` on the largest checkpoint: HF -> MCA -> HF through a
# model_optim_rng.pt larger than 4 GiB for sizes >= 4, comparing every tensor.
#
# Needs go, /usr/bin/time and about 3x the largest size of free disk in
# ROLLTPL_BENCH_WORK (default: a new directory under /tmp, removed at the
# end unless KEEP=1). Timings on the target VM vary 2-5x between runs
# (formats.md §5), hence the rounds and medians.
set -euo pipefail

cd "$(dirname "$0")/../../.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(2 8)
rounds=${ROUNDS:-3}
work=${ROLLTPL_BENCH_WORK:-$(mktemp -d /tmp/rolltpl-bench.XXXXXX)}
mkdir -p "$work"
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT

echo "== building rolltplc"
go build -o "$work/rolltplc" ./cmd/rolltplc

# timed LOG CMD...: runs CMD under /usr/bin/time -v; prints "SECONDS RSS_KB".
timed() {
	local log=$1
	shift
	/usr/bin/time -v "$@" 2>"$log" >/dev/null
	local wall rss
	wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
	rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
	# h:mm:ss or m:ss.cc to seconds
	echo "$wall" | awk -F: -v rss="$rss" '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.3f %s\n", s, rss }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

warm() { cat "$1"/* >/dev/null; }

results=()
for g in "${sizes[@]}"; do
	src="$work/hf-${g}g"
	echo "== generating a ${g} GiB Llama-shaped checkpoint in $src"
	ROLLTPL_BENCH_OUT="$src" ROLLTPL_BENCH_GIB="$g" go test -count=1 -run '^TestGenerateBenchCheckpoint$' ./runtime/exec >/dev/null
	bytes=$(du -cb "$src"/*.safetensors | tail -1 | cut -f1)
	: >"$work/cp.txt"
	: >"$work/conv.txt"
	for r in $(seq "$rounds"); do
		rm -rf "$work/cp" "$work/mca"
		sync
		warm "$src"
		t=$(timed "$work/cp-$g-$r.log" cp -r "$src" "$work/cp")
		echo "$t" >>"$work/cp.txt"
		rm -rf "$work/cp" "$work/mca"
		sync
		warm "$src"
		c=$(timed "$work/conv-$g-$r.log" "$work/rolltplc" convert --quiet --from "$src" --to "$work/mca")
		echo "$c" >>"$work/conv.txt"
		printf '   round %d: cp %6.2fs (RSS %7d KiB)   convert %6.2fs (RSS %7d KiB)\n' "$r" ${t% *} ${t#* } ${c% *} ${c#* }
	done
	cpt=$(cut -d' ' -f1 "$work/cp.txt" | median)
	cpmin=$(cut -d' ' -f1 "$work/cp.txt" | sort -g | head -1)
	cvt=$(cut -d' ' -f1 "$work/conv.txt" | median)
	cprss=$(cut -d' ' -f2 "$work/cp.txt" | sort -n | tail -1)
	cvrss=$(cut -d' ' -f2 "$work/conv.txt" | sort -n | tail -1)
	results+=("$(awk -v g="$g" -v b="$bytes" -v cp="$cpt" -v cv="$cvt" -v cr="$cprss" -v vr="$cvrss" -v cm="$cpmin" 'BEGIN {
		printf "%6s GiB  %12.0f  %8.2f  %8.2f  %6.2f  %8.2f  %9.2f  %10.1f  %12.1f", g, b, cp, cv, cv / cp, cv / cm, b / cv / 1e9, cr / 1024, vr / 1024 }')")
	rm -rf "$work/cp" "$work/mca"
	last=$src
done

echo
echo "== HF -> MCA (median of $rounds rounds, warm page cache, no fsync for either)"
echo "  size         bytes     cp (s)  conv (s)   ratio  vs best cp  conv GB/s  cp RSS MiB  conv RSS MiB (max)"
for r in "${results[@]}"; do echo "$r"; done

echo
echo "== rolltplc verify $last (HF -> MCA -> HF, every tensor compared)"
v=$(timed "$work/verify.log" "$work/rolltplc" verify --quiet --tmp "$work" "$last")
printf '   verify: %.2fs, peak RSS %d KiB, exit ok\n' ${v% *} ${v#* }
