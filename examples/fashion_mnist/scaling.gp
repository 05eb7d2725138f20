# SPDX-License-Identifier: Apache-2.0
# gnuplot -e "dir='OUT'" scaling.gp : the two figures of docs/results.md's
# scaling section, from examples/fashion_mnist/scaling.sh's OUT/w_*.dat.
set terminal pngcairo size 1000,560 font ",11" noenhanced
set grid
set logscale x 2
set xlabel "workers W (global batch 128: 128 / W examples each)"
set key outside right
files = "dense_0 true-topk_10 local-topk_10 gtopk_10 sketched_10 fetchsgd_10 global-sketch_10 true-topk_50 local-topk_50 gtopk_50 sketched_50 fetchsgd_50 global-sketch_50"
name(f) = f eq "dense_0" ? "dense" : f."x"

set output dir."/bytes_vs_workers.png"
set title "Fashion-MNIST: bytes each worker sends per step against W (sizes fixed at W = 4)"
set ylabel "kB per worker per step (log scale)"
set logscale y
plot for [f in files] dir."/w_".f.".dat" using 1:3 with linespoints title name(f)

set output dir."/accuracy_vs_workers.png"
set title "Fashion-MNIST: final test accuracy after one epoch against W"
set ylabel "test accuracy (%)"
unset logscale y
set yrange [55:88]
plot for [f in files] dir."/w_".f.".dat" using 1:2 with linespoints title name(f)
