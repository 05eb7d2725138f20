# SPDX-License-Identifier: Apache-2.0
# gnuplot -e "dir='OUT'; png='FILE'" bench/step_time_plot.gp : step time vs
# loopback rate per method (W = 4 processes, d = 50M), one panel per
# transport, from the plot_*.dat files bench/step_time_table.py writes.
# "unshaped" is the bare loopback (~tens of Gbit/s, CPU-bound), drawn at 100.
set terminal pngcairo size 1200,520 font ",11"
set output png
set multiplot layout 1,2 title "Step time vs bandwidth, W = 4 processes on 2 cores, d = 50M floats, k = d/1000"
set logscale xy
set grid
set xrange [0.7:140]
set xtics ("1 Gbit/s" 1, "10 Gbit/s" 10, "25 Gbit/s" 25, "unshaped" 100)
set xlabel "loopback rate (tc tbf, shared by all ranks)"
set ylabel "median step time (s)"
set key top right
do for [t in "tcp mpi"] {
  set title t." transport"
  plot dir."/plot_".t."_dense.dat" with linespoints lw 2 title "dense allreduce", \
       dir."/plot_".t."_dense-bf16.dat" with linespoints lw 2 dt 2 title "dense, bfloat16 wire", \
       dir."/plot_".t."_sketched.dat" with linespoints lw 2 title "Sketched-SGD", \
       dir."/plot_".t."_fetchsgd.dat" with linespoints lw 2 title "FetchSGD", \
       dir."/plot_".t."_global-sketch.dat" with linespoints lw 2 title "global-sketch SGD", \
       dir."/plot_".t."_local-topk.dat" with linespoints lw 2 title "local top-k", \
       dir."/plot_".t."_gtopk.dat" with linespoints lw 2 title "gTop-k"
}
unset multiplot
