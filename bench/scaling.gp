# SPDX-License-Identifier: Apache-2.0
# gnuplot -e "dir='OUT'; what='CPU compute (measured)'" bench/scaling.gp : the
# modelled step time against W at d = 100M for three link speeds, from
# bench/scaling.sh's OUT/model_d100M_*g.dat (columns: W, then the methods of
# bench/step_model.py in order). Writes OUT/model_d100M.png.
set terminal pngcairo size 1500,520 font ",10" noenhanced
set output dir."/model_d100M.png"
set multiplot layout 1,3 title "Modelled step time, d = 100M, k = d / 1000, one link per rank: ".what
set grid
set logscale xy
set xrange [2:2048]
set xlabel "workers W"
set ylabel "step time (s)"
set key top left font ",9"
# The methods are the data files' header (after "# W"): older runs lack the 16-bit dense.
names = system("head -1 ".dir."/model_d100M_10g.dat | cut -d' ' -f3-")
do for [g in "1 10 100"] {
  set title g." Gbit/s per link"
  plot for [i=1:words(names)] dir."/model_d100M_".g."g.dat" using 1:(column(i+1)) with linespoints title word(names, i)
}
unset multiplot
