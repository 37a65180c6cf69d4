package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// The local port is an HTTP/2 frame filter, not a gRPC proxy: each caller connection gets
// its own connection to the plugin, and frames pass through as they are, except header
// blocks, which are decoded, checked and encoded again (HPACK state is per connection and
// per direction, so a request that is not passed on must not leave the two ends' tables
// out of step). A gRPC-level proxy costs this machine ~0.15 ms and ~0.35 ms of CPU per call;
// this costs about what the byte forwarder it replaced did, and the gateway's path into a
// pod goes through it.
//
// A request for a method that is not served is answered here (UNIMPLEMENTED, trailers only)
// and never reaches the plugin; its DATA frames are dropped and their connection-level
// flow-control credit is given back to the caller. While draining, health checks are
// answered NOT_SERVING here, and health watches passing through are told NOT_SERVING and
// ended. Stopping sends GOAWAY, refuses newer streams, and waits (bounded) for the calls in
// progress.

const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	settingHeaderTableSize = 0x1

	errCodeNo      = 0x0
	errCodeProto   = 0x1
	errCodeCancel  = 0x8
	errCodeRefused = 0x7

	clientPreface  = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	maxFramePart   = 16384   // every HTTP/2 peer accepts frames this large
	maxHeaderBlock = 1 << 20 // a request's headers beyond this end the connection
	maxFrameLength = 1<<24 - 1
)

var errProtocol = errors.New("HTTP/2 protocol error")

type frameHeader struct {
	length   uint32
	typ      uint8
	flags    uint8
	streamID uint32
}

func (h frameHeader) put(b []byte) {
	b[0], b[1], b[2] = byte(h.length>>16), byte(h.length>>8), byte(h.length)
	b[3], b[4] = h.typ, h.flags
	binary.BigEndian.PutUint32(b[5:9], h.streamID&0x7fffffff)
}

// frameReader reads frames into one reused buffer.
type frameReader struct {
	r   *bufio.Reader
	hdr [9]byte
	buf []byte
}

func (fr *frameReader) next() (frameHeader, []byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return frameHeader{}, nil, err
	}
	h := frameHeader{
		length:   uint32(fr.hdr[0])<<16 | uint32(fr.hdr[1])<<8 | uint32(fr.hdr[2]),
		typ:      fr.hdr[3],
		flags:    fr.hdr[4],
		streamID: binary.BigEndian.Uint32(fr.hdr[5:9]) & 0x7fffffff,
	}
	if h.length > maxFrameLength {
		return h, nil, errProtocol
	}
	if cap(fr.buf) < int(h.length) {
		fr.buf = make([]byte, h.length)
	}
	payload := fr.buf[:h.length]
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		return h, nil, err
	}
	return h, payload, nil
}

// headerBlock reads a HEADERS frame's block with its CONTINUATION frames.
func (fr *frameReader) headerBlock(h frameHeader, payload []byte, into []byte) ([]byte, error) {
	fragment := payload
	if h.flags&flagPadded != 0 {
		if len(fragment) < 1 {
			return nil, errProtocol
		}
		pad := int(fragment[0])
		fragment = fragment[1:]
		if pad > len(fragment) {
			return nil, errProtocol
		}
		fragment = fragment[:len(fragment)-pad]
	}
	if h.flags&flagPriority != 0 {
		if len(fragment) < 5 {
			return nil, errProtocol
		}
		fragment = fragment[5:]
	}
	block := append(into[:0], fragment...)
	for end := h.flags&flagEndHeaders != 0; !end; {
		next, more, err := fr.next()
		if err != nil {
			return nil, err
		}
		if next.typ != frameContinuation || next.streamID != h.streamID {
			return nil, errProtocol
		}
		block = append(block, more...)
		if len(block) > maxHeaderBlock {
			return nil, errProtocol
		}
		end = next.flags&flagEndHeaders != 0
	}
	return block, nil
}

// h2Writer is one side's buffered writer, shared by the two directions of a connection.
type h2Writer struct {
	mu      sync.Mutex
	w       *bufio.Writer
	enc     *hpack.Encoder // encodes header blocks for this side
	encBuf  bytes.Buffer
	hdr     [9]byte
	failed  error
	dirty   bool          // written since the last flush
	tableSz atomic.Uint32 // the peer's SETTINGS_HEADER_TABLE_SIZE, applied before encoding
}

func newH2Writer(conn io.Writer) *h2Writer {
	w := &h2Writer{w: bufio.NewWriterSize(conn, 32*1024)}
	w.enc = hpack.NewEncoder(&w.encBuf)
	w.tableSz.Store(4096)
	return w
}

// frame writes one frame; the caller holds mu.
func (w *h2Writer) frame(h frameHeader, payload []byte) {
	if w.failed != nil {
		return
	}
	w.dirty = true
	h.length = uint32(len(payload))
	h.put(w.hdr[:])
	if _, err := w.w.Write(w.hdr[:]); err != nil {
		w.failed = err
		return
	}
	if _, err := w.w.Write(payload); err != nil {
		w.failed = err
	}
}

// raw writes a frame as it was read (flags and padding kept); the caller holds mu.
func (w *h2Writer) raw(h frameHeader, payload []byte) {
	w.frame(h, payload)
}

// headers encodes fields with this side's encoder and writes them as HEADERS and
// CONTINUATION frames; the caller holds mu.
func (w *h2Writer) headers(streamID uint32, fields []hpack.HeaderField, endStream bool) {
	w.enc.SetMaxDynamicTableSizeLimit(w.tableSz.Load())
	w.encBuf.Reset()
	for _, f := range fields {
		_ = w.enc.WriteField(f)
	}
	block := w.encBuf.Bytes()
	typ := uint8(frameHeaders)
	flags := uint8(0)
	if endStream {
		flags |= flagEndStream
	}
	for first := true; first || len(block) > 0; first = false {
		part := block[:min(len(block), maxFramePart)]
		block = block[len(part):]
		f := flags
		if len(block) == 0 {
			f |= flagEndHeaders
		}
		w.frame(frameHeader{typ: typ, flags: f, streamID: streamID}, part)
		typ, flags = frameContinuation, 0
	}
}

func (w *h2Writer) windowUpdate(streamID, n uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n&0x7fffffff)
	w.frame(frameHeader{typ: frameWindowUpdate, streamID: streamID}, b[:])
}

func (w *h2Writer) rstStream(streamID, code uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], code)
	w.frame(frameHeader{typ: frameRSTStream, streamID: streamID}, b[:])
}

func (w *h2Writer) flush() error {
	if w.failed != nil {
		return w.failed
	}
	w.dirty = false
	if err := w.w.Flush(); err != nil {
		w.failed = err
	}
	return w.failed
}

// filterStream is what the filter knows of one caller stream.
type filterStream struct {
	method     int
	watch      bool // a health Watch: told NOT_SERVING when draining starts
	callerDone bool // the caller ended its side
	pluginDone bool // the plugin ended its side
	// Watch streams: bytes left of the plugin's current message (-1: inside its 5-byte
	// prefix, prefixSeen bytes of it read), so that NOT_SERVING goes between messages.
	left       int
	prefix     [5]byte
	prefixSeen int
	endAtNext  bool
}

func (s *filterStream) atBoundary() bool { return s.left == 0 && s.prefixSeen == 0 }

// consume follows a Watch stream's message framing over one DATA payload.
func (s *filterStream) consume(data []byte) {
	for len(data) > 0 {
		if s.left > 0 {
			n := min(s.left, len(data))
			s.left -= n
			data = data[n:]
			continue
		}
		n := copy(s.prefix[s.prefixSeen:], data)
		s.prefixSeen += n
		data = data[n:]
		if s.prefixSeen == 5 {
			s.left = int(binary.BigEndian.Uint32(s.prefix[1:5]))
			s.prefixSeen = 0
		}
	}
}

// heldCredit is one sender's connection-level flow control as the filter passes it on.
// Every gRPC peer follows each DATA it receives with a connection WINDOW_UPDATE (and its
// bandwidth-estimating PING, answered here): passed on one by one, each woke the other end
// (plugin or caller) and cost a write here for nothing, on every call. The filter holds
// them back instead and passes them on together once they add up to a quarter of what the
// sender could have (what gRPC's receivers do with their own updates), so a sender always
// has at least three quarters of the window the receiver granted it. Only the connection's
// window is held; streams' updates pass at once.
type heldCredit struct {
	window int64 // the sender's window: granted and passed on, less the DATA passed on
	held   int64 // granted by the receiver, not passed on yet (less ownDataLocked's)
}

// sent counts DATA passed on from the sender; it returns the credit to pass on now.
func (h *heldCredit) sent(n uint32) uint32 {
	h.window -= int64(n)
	return h.due()
}

// due is the held credit once it is a quarter of the sender's due window, else 0.
func (h *heldCredit) due() uint32 {
	if h.held <= 0 || 4*h.held < h.window+h.held {
		return 0
	}
	n := h.held
	h.window += n
	h.held = 0
	return uint32(n) // at most 2^31-1: the receiver never grants a larger window
}

// connCredit is a connection WINDOW_UPDATE's increment, 0 for any other frame (and for a
// malformed one, which passes on as it is, for its receiver to reject).
func connCredit(h frameHeader, payload []byte) uint32 {
	if h.typ != frameWindowUpdate || h.streamID != 0 || len(payload) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(payload) & 0x7fffffff
}

// granted holds the receiver's connection WINDOW_UPDATE; it returns the credit to pass on
// now.
func (h *heldCredit) granted(n uint32) uint32 {
	h.held += int64(n)
	return h.due()
}

// ownDataLocked counts DATA the filter itself sends the caller: the caller's connection
// updates for it are not the plugin's to have.
func (c *filterConn) ownDataLocked(n int) {
	c.pluginCredit.held -= int64(n)
}

// grant is granted under the connection's lock.
func (c *filterConn) grant(h *heldCredit, n uint32) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return h.granted(n)
}

// filterServer serves the local port.
type filterServer struct {
	f        *front
	metrics  *portMetrics
	listener net.Listener

	mu      sync.Mutex
	conns   map[*filterConn]struct{}
	stopped bool
}

func newFilterServer(f *front, listener net.Listener) *filterServer {
	return &filterServer{f: f, metrics: f.metrics.local, listener: listener,
		conns: map[*filterConn]struct{}{}}
}

func (s *filterServer) serve() error {
	for {
		conn, err := s.listener.Accept()
		if err != nil {
			s.mu.Lock()
			stopped := s.stopped
			s.mu.Unlock()
			if stopped {
				return nil
			}
			var temporary interface{ Temporary() bool }
			if errors.As(err, &temporary) && temporary.Temporary() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		go s.handle(conn)
	}
}

func (s *filterServer) handle(caller net.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	upstream, err := s.f.dialPlugin(ctx, "")
	cancel()
	if err != nil {
		// The caller sees its connection close, which gRPC reports as UNAVAILABLE.
		s.f.log.Warn("cannot reach the plugin", "error", err.Error())
		_ = caller.Close()
		return
	}
	callerIO, upstreamIO := rawIO(caller), rawIO(upstream)
	c := &filterConn{s: s, caller: caller, upstream: upstream,
		callerIO: callerIO, upstreamIO: upstreamIO,
		toCaller: newH2Writer(callerIO), toPlugin: newH2Writer(upstreamIO),
		streams: map[uint32]*filterStream{}, done: make(chan struct{}),
		callerCredit: heldCredit{window: defaultWindow},
		pluginCredit: heldCredit{window: defaultWindow}}
	c.callerDec = hpack.NewDecoder(4096, nil)
	c.callerDec.SetAllowedMaxDynamicTableSize(64 * 1024)
	c.callerDec.SetMaxStringLength(maxHeaderBlock)
	c.pluginDec = hpack.NewDecoder(4096, nil)
	c.pluginDec.SetAllowedMaxDynamicTableSize(64 * 1024)
	c.pluginDec.SetMaxStringLength(maxHeaderBlock)
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		c.close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	go c.fromPlugin()
	c.fromCaller()
	<-c.done
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// drain tells the watches of every connection NOT_SERVING.
func (s *filterServer) drain() {
	s.mu.Lock()
	conns := make([]*filterConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.drainWatches()
	}
}

// stop sends GOAWAY on every connection, waits up to timeout for their calls, then cuts
// whatever is left.
func (s *filterServer) stop(timeout time.Duration) {
	s.mu.Lock()
	s.stopped = true
	conns := make([]*filterConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	_ = s.listener.Close()
	for _, c := range conns {
		c.goAway()
	}
	deadline := time.Now().Add(timeout)
	for _, c := range conns {
		for !c.idle() && time.Now().Before(deadline) {
			select {
			case <-c.done:
			case <-time.After(10 * time.Millisecond):
			}
		}
		c.close()
	}
}

// filterConn is one caller connection and its twin to the plugin.
type filterConn struct {
	s                  *filterServer
	caller, upstream   net.Conn
	callerIO           io.ReadWriter // reads and writes caller's socket (rawIO)
	upstreamIO         io.ReadWriter
	toCaller, toPlugin *h2Writer
	callerDec          *hpack.Decoder // the caller's header blocks (fromCaller only)
	pluginDec          *hpack.Decoder // the plugin's header blocks (fromPlugin only)

	mu         sync.Mutex
	streams    map[uint32]*filterStream
	lastStream uint32
	goingAway  bool
	closeOnce  sync.Once
	done       chan struct{}

	// Connection-level credit of each sender (see heldCredit), under mu: the caller's is
	// granted by the plugin, the plugin's by the caller.
	callerCredit, pluginCredit heldCredit
}

func (c *filterConn) close() {
	c.closeOnce.Do(func() {
		_ = c.caller.Close()
		_ = c.upstream.Close()
		c.mu.Lock()
		for id, st := range c.streams {
			if !st.pluginDone {
				c.s.metrics.called(st.method, codes.Unavailable)
				c.s.metrics.openStreams.Add(-1)
			}
			delete(c.streams, id)
		}
		c.mu.Unlock()
		close(c.done)
	})
}

func (c *filterConn) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.streams) == 0
}

// forget drops a stream once both sides ended it.
func (c *filterConn) forgetLocked(id uint32, st *filterStream) {
	if st.callerDone && st.pluginDone {
		delete(c.streams, id)
	}
}

// fromCaller moves the caller's frames to the plugin.
func (c *filterConn) fromCaller() {
	defer c.close()
	r := bufio.NewReaderSize(c.callerIO, 32*1024)
	var preface [len(clientPreface)]byte
	if _, err := io.ReadFull(r, preface[:]); err != nil || string(preface[:]) != clientPreface {
		return
	}
	w := c.toPlugin
	w.mu.Lock()
	_, _ = w.w.WriteString(clientPreface)
	w.mu.Unlock()
	fr := &frameReader{r: r}
	var block []byte
	for {
		h, payload, err := fr.next()
		if err != nil {
			return
		}
		switch h.typ {
		case frameHeaders:
			block, err = fr.headerBlock(h, payload, block)
			if err != nil {
				return
			}
			fields, err := c.callerDec.DecodeFull(block)
			if err != nil {
				return
			}
			if !c.callerHeaders(h.streamID, fields, h.flags&flagEndStream != 0) {
				return
			}
		case frameContinuation, framePushPromise:
			return // out of place: a protocol error
		case frameData:
			c.mu.Lock()
			st := c.streams[h.streamID]
			pass := st != nil && !st.callerDone
			if pass && h.flags&flagEndStream != 0 {
				st.callerDone = true
				c.forgetLocked(h.streamID, st)
			}
			credit := uint32(0)
			if pass {
				credit = c.callerCredit.sent(h.length)
			}
			c.mu.Unlock()
			if pass {
				w.mu.Lock()
				w.raw(h, payload)
				w.mu.Unlock()
				c.s.f.metrics.toPlugin.Add(uint64(len(payload)))
				if credit > 0 { // flushed with the batch (flushBoth)
					c.toCaller.mu.Lock()
					c.toCaller.windowUpdate(0, credit)
					c.toCaller.mu.Unlock()
				}
			} else if h.length > 0 {
				// Not for the plugin: give the caller its connection window back.
				c.toCaller.mu.Lock()
				c.toCaller.windowUpdate(0, h.length)
				_ = c.toCaller.flush()
				c.toCaller.mu.Unlock()
			}
		case frameWindowUpdate:
			if credit := connCredit(h, payload); credit > 0 {
				// The caller's credit for the plugin's sending: passed on when due.
				if n := c.grant(&c.pluginCredit, credit); n > 0 {
					w.mu.Lock()
					w.windowUpdate(0, n)
					w.mu.Unlock()
				}
			} else if c.passControl(h, codes.Canceled) {
				w.mu.Lock()
				w.raw(h, payload)
				w.mu.Unlock()
			}
		case frameRSTStream, framePriority:
			if c.passControl(h, codes.Canceled) {
				w.mu.Lock()
				w.raw(h, payload)
				w.mu.Unlock()
			}
		case frameSettings:
			if h.flags&flagAck == 0 {
				if size, ok := headerTableSize(payload); ok {
					c.toCaller.tableSz.Store(size) // limits our encoder toward the caller
				}
			}
			w.mu.Lock()
			w.raw(h, payload)
			w.mu.Unlock()
		case framePing:
			c.ping(c.toCaller, h, payload)
		default: // GOAWAY, extension frames
			w.mu.Lock()
			w.raw(h, payload)
			w.mu.Unlock()
		}
		if r.Buffered() == 0 {
			if err := flushBoth(w, c.toCaller); err != nil {
				return
			}
		}
	}
}

// passControl says whether a RST_STREAM, WINDOW_UPDATE or PRIORITY frame goes on: always
// for the connection, and for a stream only while the filter passes it (a stream answered
// here or already ended is the other side's unknown stream). A reset ends the stream, and
// the call is counted with resetCode unless the plugin had already finished it. The reader
// must still flush its batch after a frame that does not pass: the frames before it may be
// waiting in the writer.
func (c *filterConn) passControl(h frameHeader, resetCode codes.Code) bool {
	if h.streamID == 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[h.streamID]
	if st == nil {
		return false
	}
	if h.typ == frameRSTStream {
		delete(c.streams, h.streamID)
		if !st.pluginDone {
			c.s.metrics.called(st.method, resetCode)
			c.s.metrics.openStreams.Add(-1)
		}
	}
	return true
}

// callerHeaders handles a caller's header block; false ends the connection.
func (c *filterConn) callerHeaders(id uint32, fields []hpack.HeaderField, endStream bool) bool {
	c.mu.Lock()
	st, known := c.streams[id]
	if known {
		// Trailers of a request stream.
		pass := !st.callerDone
		if pass && endStream {
			st.callerDone = true
			c.forgetLocked(id, st)
		}
		c.mu.Unlock()
		if pass {
			w := c.toPlugin
			w.mu.Lock()
			w.headers(id, withoutPseudo(fields), endStream)
			w.mu.Unlock()
		}
		return true
	}
	if id%2 == 0 || id <= c.lastStream {
		c.mu.Unlock()
		return id > 0 && id%2 == 1 // a late frame for a closed stream: ignore it
	}
	c.lastStream = id
	// Streams answered here are not remembered: their later frames, for a stream the filter
	// does not know, are dropped (DATA with its window given back).
	if c.goingAway {
		c.mu.Unlock()
		c.toCaller.mu.Lock()
		c.toCaller.rstStream(id, errCodeRefused) // not processed: the caller may retry
		_ = c.toCaller.flush()
		c.toCaller.mu.Unlock()
		return true
	}
	path := ""
	for _, f := range fields {
		if f.Name == ":path" {
			path = f.Value
			break
		}
	}
	call := classify(path)
	draining := c.s.f.isDraining()
	switch {
	case call.kind == kindRefused:
		c.mu.Unlock()
		c.s.metrics.refused[call.refused].Add(1)
		c.s.f.logRefusal(c.s.metrics.name, path)
		c.answer(id, endStream, nil, codes.Unimplemented, refusal(path))
		return true
	case draining && (call.kind == kindHealthCheck || call.kind == kindHealthWatch):
		c.mu.Unlock()
		c.s.metrics.called(call.method, codes.OK)
		c.answer(id, endStream, notServing, codes.OK, "")
		return true
	}
	st = &filterStream{method: call.method, watch: call.kind == kindHealthWatch,
		callerDone: endStream}
	c.streams[id] = st
	c.mu.Unlock()
	c.s.metrics.openStreams.Add(1)
	w := c.toPlugin
	w.mu.Lock()
	w.headers(id, fields, endStream)
	w.mu.Unlock()
	return true
}

// answer sends a whole response from here: headers, an optional message, and the status.
func (c *filterConn) answer(id uint32, requestEnded bool, message []byte, code codes.Code,
	text string) {
	if message != nil {
		c.mu.Lock()
		c.ownDataLocked(5 + len(message))
		c.mu.Unlock()
	}
	w := c.toCaller
	w.mu.Lock()
	defer w.mu.Unlock()
	status := []hpack.HeaderField{{Name: "grpc-status", Value: strconv.Itoa(int(code))}}
	if text != "" {
		status = append(status, hpack.HeaderField{Name: "grpc-message",
			Value: percentEncode(text)})
	}
	head := []hpack.HeaderField{{Name: ":status", Value: "200"},
		{Name: "content-type", Value: "application/grpc"}}
	if message == nil {
		w.headers(id, append(head, status...), true) // trailers only
	} else {
		w.headers(id, head, false)
		w.frame(frameHeader{typ: frameData, streamID: id}, grpcMessage(message))
		w.headers(id, status, true)
	}
	if !requestEnded {
		w.rstStream(id, errCodeNo) // the request's remaining frames are not wanted
	}
	_ = w.flush()
}

// fromPlugin moves the plugin's frames to the caller.
func (c *filterConn) fromPlugin() {
	defer c.close()
	r := bufio.NewReaderSize(c.upstreamIO, 32*1024)
	fr := &frameReader{r: r}
	w := c.toCaller
	var block []byte
	for {
		h, payload, err := fr.next()
		if err != nil {
			return
		}
		switch h.typ {
		case frameHeaders:
			block, err = fr.headerBlock(h, payload, block)
			if err != nil {
				return
			}
			fields, err := c.pluginDec.DecodeFull(block)
			if err != nil {
				return
			}
			endStream := h.flags&flagEndStream != 0
			c.mu.Lock()
			st := c.streams[h.streamID]
			pass := st != nil
			if pass && endStream {
				st.pluginDone = true
				c.forgetLocked(h.streamID, st)
				c.s.metrics.called(st.method, grpcStatus(fields))
				c.s.metrics.openStreams.Add(-1)
			}
			c.mu.Unlock()
			if pass {
				w.mu.Lock()
				w.headers(h.streamID, fields, endStream)
				w.mu.Unlock()
			}
		case frameContinuation, framePushPromise:
			return
		case frameData:
			c.mu.Lock()
			st := c.streams[h.streamID]
			pass := st != nil
			endAfter := false
			if pass && st.watch {
				st.consume(dataPayload(h, payload))
				endAfter = st.endAtNext && st.atBoundary()
			}
			if pass && h.flags&flagEndStream != 0 {
				st.pluginDone = true
				c.forgetLocked(h.streamID, st)
				c.s.metrics.called(st.method, codes.Internal) // ended without a status
				c.s.metrics.openStreams.Add(-1)
			}
			credit := uint32(0)
			if pass {
				credit = c.pluginCredit.sent(h.length)
			}
			c.mu.Unlock()
			if pass {
				w.mu.Lock()
				w.raw(h, payload)
				w.mu.Unlock()
				c.s.f.metrics.fromPlugin.Add(uint64(len(payload)))
				if credit > 0 { // flushed with the batch (flushBoth)
					c.toPlugin.mu.Lock()
					c.toPlugin.windowUpdate(0, credit)
					c.toPlugin.mu.Unlock()
				}
				if endAfter {
					c.endWatch(h.streamID)
				}
			} else if h.length > 0 {
				c.toPlugin.mu.Lock()
				c.toPlugin.windowUpdate(0, h.length)
				_ = c.toPlugin.flush()
				c.toPlugin.mu.Unlock()
			}
		case frameWindowUpdate:
			if credit := connCredit(h, payload); credit > 0 {
				// The plugin's credit for the caller's sending: passed on when due.
				if n := c.grant(&c.callerCredit, credit); n > 0 {
					w.mu.Lock()
					w.windowUpdate(0, n)
					w.mu.Unlock()
				}
			} else if c.passControl(h, rstCode(payload)) {
				w.mu.Lock()
				w.raw(h, payload)
				w.mu.Unlock()
			}
		case frameRSTStream, framePriority:
			if c.passControl(h, rstCode(payload)) {
				w.mu.Lock()
				w.raw(h, payload)
				w.mu.Unlock()
			}
		case frameSettings:
			if h.flags&flagAck == 0 {
				if size, ok := headerTableSize(payload); ok {
					c.toPlugin.tableSz.Store(size)
				}
			}
			w.mu.Lock()
			w.raw(h, payload)
			w.mu.Unlock()
		case framePing:
			c.ping(c.toPlugin, h, payload)
		default:
			w.mu.Lock()
			w.raw(h, payload)
			w.mu.Unlock()
		}
		if r.Buffered() == 0 {
			if err := flushBoth(w, c.toPlugin); err != nil {
				return
			}
		}
	}
}

// ping answers a PING itself instead of passing it on: gRPC's pings (bandwidth estimates,
// keepalive) then cost one hop, not two, and each side's keepalive still proves the
// connection it has, which ends when the other one does. Acks are of nobody's pings.
func (c *filterConn) ping(sender *h2Writer, h frameHeader, payload []byte) {
	if h.flags&flagAck != 0 || h.streamID != 0 {
		return
	}
	sender.mu.Lock()
	sender.frame(frameHeader{typ: framePing, flags: flagAck}, payload)
	sender.mu.Unlock() // flushed with the reader's batch (flushBoth)
}

// flushBoth flushes what a reader wrote: mostly to the other side, sometimes (ping acks)
// back to its own.
func flushBoth(forward, back *h2Writer) error {
	forward.mu.Lock()
	err := forward.flush()
	forward.mu.Unlock()
	back.mu.Lock()
	if back.dirty {
		_ = back.flush()
	}
	back.mu.Unlock()
	return err
}

// drainWatches tells every health watch NOT_SERVING, between two of the plugin's messages.
func (c *filterConn) drainWatches() {
	var now []uint32
	c.mu.Lock()
	for id, st := range c.streams {
		if st.watch {
			if st.atBoundary() {
				now = append(now, id)
			} else {
				st.endAtNext = true
			}
		}
	}
	c.mu.Unlock()
	for _, id := range now {
		c.endWatch(id)
	}
}

// endWatch answers a watch NOT_SERVING and ends it, and cancels it at the plugin.
func (c *filterConn) endWatch(id uint32) {
	c.mu.Lock()
	st := c.streams[id]
	if st == nil {
		c.mu.Unlock()
		return
	}
	if !st.pluginDone {
		c.s.metrics.called(st.method, codes.OK)
		c.s.metrics.openStreams.Add(-1)
	}
	requestEnded := st.callerDone
	delete(c.streams, id)
	c.ownDataLocked(len(grpcMessage(notServing)))
	c.mu.Unlock()
	w := c.toCaller
	w.mu.Lock()
	w.frame(frameHeader{typ: frameData, streamID: id}, grpcMessage(notServing))
	w.headers(id, []hpack.HeaderField{{Name: "grpc-status", Value: "0"}}, true)
	if !requestEnded {
		w.rstStream(id, errCodeNo)
	}
	_ = w.flush()
	w.mu.Unlock()
	p := c.toPlugin
	p.mu.Lock()
	p.rstStream(id, errCodeCancel)
	_ = p.flush()
	p.mu.Unlock()
}

// goAway tells the caller that no stream after the last one it opened will be served.
func (c *filterConn) goAway() {
	c.mu.Lock()
	c.goingAway = true
	last := c.lastStream
	c.mu.Unlock()
	var b [8]byte
	binary.BigEndian.PutUint32(b[0:4], last)
	binary.BigEndian.PutUint32(b[4:8], errCodeNo)
	w := c.toCaller
	w.mu.Lock()
	w.frame(frameHeader{typ: frameGoAway}, b[:])
	_ = w.flush()
	w.mu.Unlock()
}

func headerTableSize(settings []byte) (uint32, bool) {
	found, size := false, uint32(0)
	for i := 0; i+6 <= len(settings); i += 6 {
		if binary.BigEndian.Uint16(settings[i:]) == settingHeaderTableSize {
			found, size = true, binary.BigEndian.Uint32(settings[i+2:])
		}
	}
	return size, found
}

func dataPayload(h frameHeader, payload []byte) []byte {
	if h.flags&flagPadded == 0 || len(payload) == 0 {
		return payload
	}
	pad := int(payload[0])
	if pad >= len(payload) {
		return nil
	}
	return payload[1 : len(payload)-pad]
}

func withoutPseudo(fields []hpack.HeaderField) []hpack.HeaderField {
	out := fields[:0:0]
	for _, f := range fields {
		if len(f.Name) == 0 || f.Name[0] != ':' {
			out = append(out, f)
		}
	}
	return out
}

func grpcStatus(fields []hpack.HeaderField) codes.Code {
	for _, f := range fields {
		if f.Name == "grpc-status" {
			if n, err := strconv.Atoi(f.Value); err == nil && n >= 0 && n < numCodes {
				return codes.Code(n)
			}
			return codes.Unknown
		}
	}
	return codes.Unknown
}

// rstCode maps an HTTP/2 reset to the status gRPC clients report for it.
func rstCode(payload []byte) codes.Code {
	if len(payload) < 4 {
		return codes.Internal
	}
	switch binary.BigEndian.Uint32(payload) {
	case errCodeCancel:
		return codes.Canceled
	case errCodeRefused:
		return codes.Unavailable
	default:
		return codes.Internal
	}
}

func grpcMessage(message []byte) []byte {
	out := make([]byte, 5+len(message))
	binary.BigEndian.PutUint32(out[1:5], uint32(len(message)))
	copy(out[5:], message)
	return out
}

func refusal(method string) string {
	return fmt.Sprintf("plugin-front: %s is not served here: this port serves only pluginv2.* "+
		"and %s; go-plugin's controller, stdio, broker and reflection services are private to "+
		"the plugin's host", shorten(method), healthService)
}

// percentEncode is gRPC's grpc-message encoding.
func percentEncode(text string) string {
	const hex = "0123456789ABCDEF"
	var b []byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}
