#!/usr/bin/perl
# kernels-cuda/*.cu as C++ for the host emulation in this directory: each
# launch kernel<<<config>>>(args); becomes an emu_launch call, and the
# dynamic shared memory (extern __shared__ float name[];) the emulated
# block's. Nothing else changes, so the emulation runs the kernels' own code.
# usage: launches.pl IN.cu OUT.cpp
use strict;
use warnings;

die "usage: launches.pl IN.cu OUT.cpp\n" unless @ARGV == 2;
my ($in, $out) = @ARGV;
open(my $f, '<', $in) or die "$in: $!\n";
my $src = do { local $/; <$f> };
close $f;

# (?3) matches the balanced parentheses of the arguments
$src =~ s{(\w+)\s*<<<(.*?)>>>\s*(\((?:[^()]++|(?3))*\))\s*;}
         {emu_launch((const void *)$1, "$1", emu_config($2), [=] { $1$3; });}gs;
$src =~ s{extern\s+__shared__\s+float\s+(\w+)\s*\[\s*\]\s*;}
         {float *$1 = (float *)emu_dynamic_smem();}g;
die "$in: a launch the rewrite did not understand is left\n" if $src =~ /<<</;
die "$in: extern __shared__ other than float name[] is left\n" if $src =~ /extern\s+__shared__/;

open(my $o, '>', "$out.tmp") or die "$out.tmp: $!\n";
print $o "#line 1 \"$in\"\n", $src;
close $o or die "$out.tmp: $!\n";
rename("$out.tmp", $out) or die "$out: $!\n";
