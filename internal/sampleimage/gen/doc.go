// Command gen writes a sample memory image (runs of zero, random and
// text-like pages) or mutates one; used by scripts/demo.sh.
//
//	gen -o FILE -size 256M [-seed N] [-zero 0.6 -random 0.2 -text 0.2]
//	gen -mutate FILE -fraction 0.05 [-seed N] [-any]
package main
