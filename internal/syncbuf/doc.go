// Package syncbuf is a bytes.Buffer that one goroutine (a child process's
// output copier, a device) may write while another reads it: the sink tests
// hand to a process or device whose output they poll.
//
// What it must not do: bound, drop or reorder what is written (tests read
// it all), or serve as a pipe (readers poll String; nothing blocks).
package syncbuf
