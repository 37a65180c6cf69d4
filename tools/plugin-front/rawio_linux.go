//go:build linux

package main

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Both ports read and write their sockets with raw system calls (syscall.RawSyscall) and
// still wait in Go's poller when a socket is not ready (syscall.RawConn). Why: a system call
// made the ordinary way (net.Conn's Read and Write, through the runtime's entersyscall)
// wakes the runtime's sysmon thread whenever it sleeps, and it sleeps whenever the front is
// idle, so between calls at any ordinary rate. Each call then began with a futex wake-up of
// a sleeping thread (on this VM often an idle vCPU's wake-up, before the call's first
// read), and sysmon polled every 20 µs (nanosleep) until the front was idle again, on the
// cores the plugin and its caller need. read and write on a non-blocking socket never
// block, so the scheduler has nothing to take over while they run.

// rawConn reads and writes one connection's socket. Read is used by one goroutine at a
// time (a connection's reader) and Write by one at a time (its writers hold a lock), so
// each keeps its arguments and results here: no closure is allocated per system call.
type rawConn struct {
	rc syscall.RawConn

	rbuf    []byte
	rn      int
	rerr    syscall.Errno
	readFn  func(uintptr) bool
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	writeFn func(uintptr) bool
}

// rawIO is conn's reader and writer: raw system calls for a socket, conn itself for
// anything else (e.g. net.Pipe in tests). Deadlines set on conn still apply (the poller
// enforces them while waiting), and closing conn ends a wait.
func rawIO(conn net.Conn) io.ReadWriter {
	inner := conn
	if c, ok := inner.(*countedConn); ok {
		inner = c.Conn
	}
	sc, ok := inner.(syscall.Conn)
	if !ok {
		return conn
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return conn
	}
	r := &rawConn{rc: rc}
	r.readFn, r.writeFn = r.read, r.write
	return r
}

// read is RawConn.Read's callback: false asks the poller to wait for data.
func (r *rawConn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd,
			uintptr(unsafe.Pointer(&r.rbuf[0])), uintptr(len(r.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			r.rn, r.rerr = int(n), 0
		default:
			r.rn, r.rerr = 0, e
		}
		return true
	}
}

func (r *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rbuf = p
	err := r.rc.Read(r.readFn)
	r.rbuf = nil
	switch {
	case err != nil:
		return 0, err
	case r.rerr != 0:
		return 0, os.NewSyscallError("read", r.rerr)
	case r.rn == 0:
		return 0, io.EOF
	}
	return r.rn, nil
}

// write is RawConn.Write's callback: false asks the poller to wait for room.
func (r *rawConn) write(fd uintptr) bool {
	for len(r.wbuf) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd,
			uintptr(unsafe.Pointer(&r.wbuf[0])), uintptr(len(r.wbuf)))
		switch e {
		case 0:
			r.wn += int(n)
			r.wbuf = r.wbuf[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.werr = e
			return true
		}
	}
	return true
}

func (r *rawConn) Write(p []byte) (int, error) {
	r.wbuf, r.wn, r.werr = p, 0, 0
	err := r.rc.Write(r.writeFn)
	n := r.wn
	r.wbuf = nil
	if err == nil && r.werr != 0 {
		err = os.NewSyscallError("write", r.werr)
	}
	return n, err
}
