#!/usr/bin/env bash
# Conversion speed and memory in both directions, against cp -r of the same
# bytes in the same run (issue 4, acceptance 4; issue 15, acceptance 4).
#
# Usage: runtime/exec/bench/bench.sh [SIZE_GIB ...]      (default: 2 8)
#
# For each size it generates a Llama-3-proportioned bf16 checkpoint of that
# many GiB (fixed layer shapes, more layers for a bigger model; shards of at
# most 5 GB with an index, as Hugging Face writes them) and its MCA forms
# for each TP size in TPS (default "1 4"), then times these cases:
#
#   HF -> MCA --tp N    source: the HF folder
#   MCA -> HF (tp N)    source: the MCA folder written with --tp N
#
# ROUNDS times each (default 5), alternating within a round:
#
#   - drop the previous output, sync, warm the page cache with the source;
#   - time `cp -r SRC DST` under /usr/bin/time -v;
#   - the same, then time `rolltplc convert --quiet --from SRC --to DST`.
#
# With SYNC=1 (the default) both sides include writing the data to disk:
# `sh -c 'cp -r SRC DST && sync'` against `convert --sync` (every output
# file fsynced before it is renamed into place); with SYNC=0 neither does.
#
# It prints, per case, the median wall times, conversion/cp ratio (the
# median of the per-round ratios, which cancels most of the VM's drift
# between rounds; targets: HF -> MCA <= 1.3, MCA -> HF <= 1.1), the ratio of
# the medians, and the peak RSS /usr/bin/time reports ("Maximum resident
# set size", mapped input pages included; target: tens of MiB, independent
# of model size). Last, it runs `rolltplc verify` on the largest
# checkpoint: HF -> MCA -> HF through a model_optim_rng.pt larger than
# 4 GiB for sizes >= 4, comparing every tensor.
#
# Needs go, /usr/bin/time and about 5x the largest size of free disk in
# ROLLTPL_BENCH_WORK (default: a new directory under /tmp, removed at the
# end unless KEEP=1). Timings on the target VM vary 2-5x between runs
# (formats.md §5), hence the rounds, medians and same-round ratios.
set -euo pipefail

cd "$(dirname "$0")/../../.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(2 8)
rounds=${ROUNDS:-5}
sync=${SYNC:-1}
read -r -a tps <<<"${TPS:-1 4}"
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

warm() { find "$1" -type f -exec cat {} + >/dev/null; }

syncflag=()
cpcmd=(cp -r)
if [ "$sync" = 1 ]; then
	syncflag=(--sync)
	cpcmd=(sh -c 'cp -r "$1" "$2" && sync' sh)
fi

# bench NAME SIZE SRC ARGS...: ROUNDS rounds of cp -r SRC against
# rolltplc convert --from SRC ARGS; appends a result line.
results=()
bench() {
	local name=$1 g=$2 src=$3
	shift 3
	local bytes
	bytes=$(du -cb $(find "$src" -name '*.safetensors' -o -name '*.pt') | tail -1 | cut -f1)
	: >"$work/cp.txt"
	: >"$work/conv.txt"
	: >"$work/ratio.txt"
	echo "== $name, ${g} GiB ($bytes bytes of tensors)"
	for r in $(seq "$rounds"); do
		rm -rf "$work/out"
		sync
		warm "$src"
		t=$(timed "$work/cp.log" "${cpcmd[@]}" "$src" "$work/out")
		rm -rf "$work/out"
		sync
		warm "$src"
		c=$(timed "$work/conv.log" "$work/rolltplc" convert --quiet "${syncflag[@]}" --from "$src" --to "$work/out" "$@")
		echo "$t" >>"$work/cp.txt"
		echo "$c" >>"$work/conv.txt"
		awk -v a="${c% *}" -v b="${t% *}" 'BEGIN { printf "%.4f\n", a / b }' >>"$work/ratio.txt"
		printf '   round %d: cp %6.2fs (RSS %7d KiB)   convert %6.2fs (RSS %7d KiB)   ratio %.2f\n' "$r" ${t% *} ${t#* } ${c% *} ${c#* } "$(tail -1 "$work/ratio.txt")"
	done
	rm -rf "$work/out"
	local cpt cvt rt cprss cvrss
	cpt=$(cut -d' ' -f1 "$work/cp.txt" | median)
	cvt=$(cut -d' ' -f1 "$work/conv.txt" | median)
	rt=$(median <"$work/ratio.txt")
	cprss=$(cut -d' ' -f2 "$work/cp.txt" | sort -n | tail -1)
	cvrss=$(cut -d' ' -f2 "$work/conv.txt" | sort -n | tail -1)
	results+=("$(awk -v n="$name" -v g="$g" -v b="$bytes" -v cp="$cpt" -v cv="$cvt" -v rt="$rt" -v cr="$cprss" -v vr="$cvrss" 'BEGIN {
		printf "%-18s %5s GiB  %8.2f  %8.2f  %11.2f  %10.2f  %9.2f  %10.1f  %12.1f", n, g, cp, cv, rt, cv / cp, b / cv / 1e9, cr / 1024, vr / 1024 }')")
}

for g in "${sizes[@]}"; do
	src="$work/hf-${g}g"
	echo "== generating a ${g} GiB Llama-shaped checkpoint in $src"
	ROLLTPL_BENCH_OUT="$src" ROLLTPL_BENCH_GIB="$g" go test -count=1 -run '^TestGenerateBenchCheckpoint$' ./runtime/exec >/dev/null
	for tp in "${tps[@]}"; do
		rm -rf "$work/mca-${g}g-tp$tp"
		"$work/rolltplc" convert --quiet --tp "$tp" --from "$src" --to "$work/mca-${g}g-tp$tp"
	done
	for tp in "${tps[@]}"; do
		bench "HF -> MCA --tp $tp" "$g" "$src" --tp "$tp"
		bench "MCA -> HF (tp $tp)" "$g" "$work/mca-${g}g-tp$tp"
	done
	for tp in "${tps[@]}"; do rm -rf "$work/mca-${g}g-tp$tp"; done
	last=$src
done

echo
if [ "$sync" = 1 ]; then
	echo "== median of $rounds rounds, warm page cache, data synced to disk by both (cp -r && sync; convert --sync)"
else
	echo "== median of $rounds rounds, warm page cache, no sync for either"
fi
echo "  case                  size    cp (s)  conv (s)  conv/cp (a)  median/med  conv GB/s  cp RSS MiB  conv RSS MiB (max)"
for r in "${results[@]}"; do echo "$r"; done
echo "(a) median of the per-round ratios; targets: HF -> MCA <= 1.3, MCA -> HF <= 1.1"

echo
echo "== rolltplc verify $last (HF -> MCA -> HF, every tensor compared)"
v=$(timed "$work/verify.log" "$work/rolltplc" verify --quiet --tmp "$work" "$last")
printf '   verify: %.2fs, peak RSS %d KiB, exit ok\n' ${v% *} ${v#* }
