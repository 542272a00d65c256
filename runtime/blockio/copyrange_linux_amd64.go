package blockio

// copyFileRangeTrap is the number of the copy_file_range system call.
const copyFileRangeTrap = 326
