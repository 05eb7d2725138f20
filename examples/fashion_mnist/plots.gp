# SPDX-License-Identifier: Apache-2.0
# gnuplot -e "dir='OUT'" plots.gp : the two figures of docs/results.md.
set terminal pngcairo size 900,560 font ",11"
set key bottom right
set grid

set output dir."/accuracy_vs_step.png"
set title "Fashion-MNIST, 4 workers: test accuracy vs step (compressed methods at 10x)"
set xlabel "step"
set ylabel "test accuracy (%)"
set yrange [60:90]
plot dir."/curve_dense.dat" with linespoints title "dense", \
     dir."/curve_true-topk.dat" with linespoints title "true top-k (dense bytes)", \
     dir."/curve_local-topk.dat" with linespoints title "local top-k", \
     dir."/curve_sketched.dat" with linespoints title "Sketched-SGD", \
     dir."/curve_fetchsgd.dat" with linespoints title "FetchSGD", \
     dir."/curve_global-sketch.dat" with linespoints title "global-sketch SGD"

set output dir."/accuracy_vs_bytes.png"
set title "Fashion-MNIST, 4 workers: final test accuracy vs bytes sent per worker"
set xlabel "MB sent per worker (log scale)"
set logscale x
set yrange [0:90]
plot dir."/final_dense.dat" with points pt 7 ps 2 title "dense", \
     dir."/final_true-topk.dat" with linespoints title "true top-k", \
     dir."/final_local-topk.dat" with linespoints title "local top-k", \
     dir."/final_sketched.dat" with linespoints title "Sketched-SGD", \
     dir."/final_fetchsgd.dat" with linespoints title "FetchSGD", \
     dir."/final_global-sketch.dat" with linespoints title "global-sketch SGD"
