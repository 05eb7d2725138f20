# SPDX-License-Identifier: Apache-2.0
# Test accuracy against bytes per rank per step (summary.py's summary.dat:
# blocks 0 allreduce and fp16_compress_hook, 1 PowerSGD by rank, 2 the
# sketch hook by target X).
#   gnuplot -e "data='summary.dat'; out='accuracy_vs_bytes.png'" plot.gp
set terminal pngcairo size 900,560 font ",11"
set output out
set logscale x
set xlabel "bytes per rank per step after warm-up (log scale)"
set ylabel "test accuracy after 3 epochs (%)"
set title "DDP on Fashion-MNIST, W = 4 (gloo): mean and sd over 3 seeds"
set grid
set key bottom right
plot data index 0 using 2:3:4 with yerrorbars pt 5 ps 1.3 lc rgb "#444444" title "allreduce (DDP default); fp16\\_compress\\_hook", \
     data index 0 using 2:3:1 with labels offset 0,0.9 tc rgb "#444444" notitle, \
     data index 1 using 2:3:4 with yerrorbars pt 7 ps 1.3 lc rgb "#d62728" title "PowerSGD (label: rank)", \
     data index 1 using 2:3:1 with labels offset -1.5,0.9 tc rgb "#d62728" notitle, \
     data index 2 using 2:3:4 with yerrorbars pt 9 ps 1.3 lc rgb "#1f77b4" title "sketch hook, Sketched-SGD (label: target X)", \
     data index 2 using 2:3:1 with labels offset 1.5,-0.9 tc rgb "#1f77b4" notitle
