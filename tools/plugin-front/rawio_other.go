//go:build !linux

package main

import (
	"io"
	"net"
)

// rawIO: raw system calls are used on Linux only (rawio_linux.go says why).
func rawIO(conn net.Conn) io.ReadWriter { return conn }
