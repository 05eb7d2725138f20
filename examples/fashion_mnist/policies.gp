# SPDX-License-Identifier: Apache-2.0
# gnuplot -e "dir='OUT'" policies.gp : the policy study's two figures (means over the seeds).
set terminal pngcairo size 900,560 font ",11"
set key bottom right
set grid
set xlabel "step"
set ylabel "test accuracy (%), mean over seeds"
set yrange [70:90]

set output dir."/adam_vs_step.png"
set title "Fashion-MNIST, 4 workers: the Adam rule over dense and sketched aggregation"
plot dir."/policy_dense_Adam.dat" with linespoints title "dense, Adam", \
     dir."/policy_SketchedSGD_10x_Adam.dat" with linespoints title "Sketched-SGD 10x, Adam", \
     dir."/policy_SketchedSGD_50x_Adam.dat" with linespoints title "Sketched-SGD 50x, Adam", \
     dir."/policy_dense_momentum_SGD.dat" with lines dt 2 lc rgb "black" title "dense, momentum SGD"

set output dir."/masking_vs_step.png"
set title "Fashion-MNIST, 4 workers: Sketched-SGD with and without momentum masking"
plot dir."/policy_SketchedSGD_10x_momentum_SGD.dat" with linespoints title "10x, masking", \
     dir."/policy_SketchedSGD_10x_momentum_SGD_no_masking.dat" with linespoints title "10x, no masking", \
     dir."/policy_SketchedSGD_50x_momentum_SGD.dat" with linespoints title "50x, masking", \
     dir."/policy_SketchedSGD_50x_momentum_SGD_no_masking.dat" with linespoints title "50x, no masking", \
     dir."/policy_dense_momentum_SGD.dat" with lines dt 2 lc rgb "black" title "dense"
