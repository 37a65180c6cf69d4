package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// The attach port routes each gRPC call (each HTTP/2 stream), not each connection, to the
// next ready replica, round robin: the local plugin over its socket, the peers over their
// local ports. It speaks HTTP/2 to both sides itself: header blocks are decoded and encoded
// again for the connection they go to, stream ids are mapped, and flow control is kept
// per hop: a sender gets its window back once its bytes were passed on, so what waits here
// is bounded by the windows this port grants. Messages are never decoded.
//
// A replica is picked only once its connection is up and its health ("plugin" Watch, as
// go-plugin's Ping asks) says SERVING; one whose connection broke is skipped, and a call
// that a replica refused unprocessed (GOAWAY, REFUSED_STREAM) is reset with REFUSED_STREAM,
// which gRPC clients retry transparently (on this same port, so on another replica).

const (
	routerStreamWindow = 1 << 20 // granted per stream, to callers and to replicas
	routerConnWindow   = 4 << 20 // granted per connection
	defaultWindow      = 65535
	maxOutBuffer       = 64 << 20 // a peer that reads nothing loses its connection
	writeTimeout       = 10 * time.Second
	framePing          = 0x6
	settingInitWindow  = 0x4
	settingMaxStreams  = 0x3
)

// outConn is one side of a routed connection: frames are appended under the router's
// lock and written by whoever flushes, without that lock.
type outConn struct {
	conn    net.Conn
	io      io.ReadWriter // reads and writes conn's socket (rawIO)
	outMu   sync.Mutex
	out     []byte
	writeMu sync.Mutex
	renewAt time.Time // when flush sets the write deadline again (under writeMu)
	closed  atomic.Bool
	enc     *hpack.Encoder
	encBuf  bytes.Buffer
	hdr     [9]byte
}

func newOutConn(conn net.Conn) *outConn {
	o := &outConn{conn: conn, io: rawIO(conn)}
	o.enc = hpack.NewEncoder(&o.encBuf)
	return o
}

// frame appends one frame; the caller holds the router's lock.
func (o *outConn) frame(h frameHeader, payload []byte) {
	h.length = uint32(len(payload))
	h.put(o.hdr[:])
	o.outMu.Lock()
	if len(o.out) < maxOutBuffer {
		o.out = append(o.out, o.hdr[:]...)
		o.out = append(o.out, payload...)
	} else if !o.closed.Load() {
		o.closed.Store(true)
		_ = o.conn.Close()
	}
	o.outMu.Unlock()
}

// headers encodes and appends a header block; the caller holds the router's lock (which
// orders the encoder's use).
func (o *outConn) headers(id uint32, fields []hpack.HeaderField, endStream bool) {
	o.encBuf.Reset()
	for _, f := range fields {
		_ = o.enc.WriteField(f)
	}
	block := o.encBuf.Bytes()
	typ, flags := uint8(frameHeaders), uint8(0)
	if endStream {
		flags = flagEndStream
	}
	for first := true; first || len(block) > 0; first = false {
		part := block[:min(len(block), maxFramePart)]
		block = block[len(part):]
		f := flags
		if len(block) == 0 {
			f |= flagEndHeaders
		}
		o.frame(frameHeader{typ: typ, flags: f, streamID: id}, part)
		typ, flags = frameContinuation, 0
	}
}

func (o *outConn) u32(typ uint8, id, value uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], value)
	o.frame(frameHeader{typ: typ, streamID: id}, b[:])
}

// flush writes what was appended; it is called without the router's lock.
func (o *outConn) flush() error {
	o.writeMu.Lock()
	defer o.writeMu.Unlock()
	o.outMu.Lock()
	data := o.out
	o.out = nil
	o.outMu.Unlock()
	if len(data) == 0 || o.closed.Load() {
		return nil
	}
	// A write that cannot finish within writeTimeout (less up to a second) ends the
	// connection. The deadline is set again at most once a second, not on every flush: each
	// setting moves a runtime timer, about 1.5% of the attach port's CPU when it was set
	// per flush.
	if now := time.Now(); !now.Before(o.renewAt) {
		_ = o.conn.SetWriteDeadline(now.Add(writeTimeout))
		o.renewAt = now.Add(time.Second)
	}
	if _, err := o.io.Write(data); err != nil {
		o.closed.Store(true)
		_ = o.conn.Close()
		return err
	}
	return nil
}

// touched collects the connections a goroutine wrote to, to flush them together.
type touched []*outConn

func (t *touched) add(o *outConn) {
	for _, x := range *t {
		if x == o {
			return
		}
	}
	*t = append(*t, o)
}

func (t *touched) flush() {
	for _, o := range *t {
		_ = o.flush()
	}
	*t = (*t)[:0]
}

// chunk is DATA waiting for flow-control window.
type chunk struct {
	data      []byte
	end       bool                // END_STREAM after it
	trailers  []hpack.HeaderField // or: trailers to send after the data before them
	isTrailer bool
}

// window is one direction of a stream: what may be sent, what waits, what to credit back.
type window struct {
	send    int64 // the receiver's window for this stream
	pending []chunk
	unacked int64 // bytes passed on that the sender was not yet credited for
	ended   bool  // END_STREAM passed on (or reset)
}

// rStream is one call routed from a caller's stream to a replica's stream.
type rStream struct {
	caller      *callerConn
	callerID    uint32
	up          *upstream
	upID        uint32
	method      int
	toUp        window // caller -> replica
	toCaller    window // replica -> caller
	headersSent bool   // response headers went to the caller
	watch       bool
	done        bool
}

// callerConn is one caller's connection to the attach port.
type callerConn struct {
	out         *outConn
	dec         *hpack.Decoder
	streams     map[uint32]*rStream
	lastStream  uint32
	sendConn    int64 // the caller's connection window
	initWindow  int64 // the caller's SETTINGS_INITIAL_WINDOW_SIZE
	unackedConn int64
	goingAway   bool
	closed      bool
	done        chan struct{}
}

// upstream is the connection to one replica (re-dialled while the replica is wanted).
type upstream struct {
	address     string
	local       bool
	out         *outConn
	dec         *hpack.Decoder
	streams     map[uint32]*rStream
	nextID      uint32
	sendConn    int64
	initWindow  int64
	maxStreams  uint32
	unackedConn int64
	ready       bool // SETTINGS received
	healthy     bool
	healthID    uint32
	health      filterStream // the health Watch's message framing
	healthBuf   []byte
	goingAway   bool
	conn        net.Conn
	wanted      bool
	gen         int // increments per connection, to ignore stale readers
}

type router struct {
	f        *front
	metrics  *portMetrics
	listener net.Listener

	mu        sync.Mutex
	callers   map[*callerConn]struct{}
	local     *upstream
	peers     map[string]*upstream
	order     []*upstream
	next      int
	draining  bool
	stopped   bool
	readyCh   chan struct{} // closed once an upstream is first ready
	readyOnce sync.Once
}

func newRouter(f *front, listener net.Listener, localAddress string) *router {
	r := &router{f: f, metrics: f.metrics.attach, listener: listener,
		callers: map[*callerConn]struct{}{}, peers: map[string]*upstream{},
		readyCh: make(chan struct{})}
	r.local = &upstream{address: localAddress, local: true, wanted: true}
	r.order = []*upstream{r.local}
	r.updatePeerMetricsLocked()
	go r.keep(r.local)
	return r
}

// setPeers is the peer set's callback: the replicas other than this pod.
func (r *router) setPeers(addresses []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := map[string]bool{}
	for _, a := range addresses {
		want[a] = true
		if _, ok := r.peers[a]; !ok && !r.stopped {
			u := &upstream{address: a, wanted: true}
			r.peers[a] = u
			r.order = append(r.order, u)
			go r.keep(u)
		}
	}
	for a, u := range r.peers {
		if !want[a] {
			u.wanted = false
			delete(r.peers, a)
			r.removeFromOrderLocked(u)
			if len(u.streams) == 0 && u.conn != nil {
				_ = u.conn.Close()
			}
		}
	}
	r.updatePeerMetricsLocked()
}

func (r *router) removeFromOrderLocked(u *upstream) {
	for i, x := range r.order {
		if x == u {
			r.order = append(r.order[:i], r.order[i+1:]...)
			return
		}
	}
}

func (r *router) updatePeerMetricsLocked() {
	ready := 0
	for _, u := range r.order {
		if u.ready && u.healthy && !u.goingAway {
			ready++
		}
	}
	r.f.metrics.peersKnown.Store(int64(len(r.order)))
	r.f.metrics.peersReady.Store(int64(ready))
}

// keep dials u until it is no longer wanted, and re-dials (with backoff) when its
// connection ends.
func (r *router) keep(u *upstream) {
	backoff := 50 * time.Millisecond
	for {
		r.mu.Lock()
		wanted := u.wanted && !r.stopped
		r.mu.Unlock()
		if !wanted {
			return
		}
		started := time.Now()
		if err := r.connect(u); err != nil {
			r.f.log.Debug("cannot reach a replica", "address", u.address, "error", err.Error())
		}
		if time.Since(started) > 2*time.Second {
			backoff = 50 * time.Millisecond
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 2*time.Second)
	}
}

// connect runs one connection to u until it ends.
func (r *router) connect(u *upstream) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	conn, err := r.f.dialPeer(ctx, u.address)
	cancel()
	if err != nil {
		return err
	}
	out := newOutConn(conn)
	r.mu.Lock()
	if !u.wanted || r.stopped {
		r.mu.Unlock()
		_ = conn.Close()
		return nil
	}
	u.gen++
	gen := u.gen
	u.conn, u.out = conn, out
	u.dec = hpack.NewDecoder(4096, nil)
	u.dec.SetAllowedMaxDynamicTableSize(64 * 1024)
	u.dec.SetMaxStringLength(maxHeaderBlock)
	u.streams = map[uint32]*rStream{}
	u.nextID, u.sendConn, u.initWindow, u.maxStreams = 1, defaultWindow, defaultWindow, 1<<31
	u.unackedConn, u.ready, u.healthy, u.goingAway, u.healthID = 0, false, false, false, 0
	out.outMu.Lock()
	out.out = append(out.out, clientPreface...)
	out.outMu.Unlock()
	out.frame(frameHeader{typ: frameSettings}, settingsPayload(0))
	out.u32(frameWindowUpdate, 0, routerConnWindow-defaultWindow)
	r.mu.Unlock()
	if err := out.flush(); err != nil {
		_ = conn.Close()
		return err
	}
	err = r.readUpstream(u, gen, out.io)
	r.mu.Lock()
	r.upstreamGoneLocked(u, gen)
	r.mu.Unlock()
	return err
}

// settingsPayload is this port's SETTINGS: its stream window and, for callers, no limit
// on streams beyond the replicas' own.
func settingsPayload(maxStreams uint32) []byte {
	var b []byte
	put := func(id uint16, v uint32) {
		b = binary.BigEndian.AppendUint16(b, id)
		b = binary.BigEndian.AppendUint32(b, v)
	}
	put(0x2, 0) // ENABLE_PUSH off
	put(settingInitWindow, routerStreamWindow)
	if maxStreams > 0 {
		put(settingMaxStreams, maxStreams)
	}
	return b
}

// upstreamGoneLocked ends every call still on a connection that closed.
func (r *router) upstreamGoneLocked(u *upstream, gen int) {
	if u.gen != gen {
		return
	}
	_ = u.conn.Close()
	u.ready, u.healthy = false, false
	var t touched
	for id, s := range u.streams {
		delete(u.streams, id)
		if s.caller != nil && !s.done {
			r.failLocked(s, codes.Unavailable, "plugin-front: the connection to the replica "+
				"serving this call broke", &t)
		}
	}
	r.updatePeerMetricsLocked()
	go t.flush()
}

// failLocked ends a call toward its caller with a status of ours.
func (r *router) failLocked(s *rStream, code codes.Code, text string, t *touched) {
	if s.done {
		return
	}
	s.done = true
	c := s.caller
	delete(c.streams, s.callerID)
	if c.closed {
		return
	}
	status := []hpack.HeaderField{{Name: "grpc-status", Value: strconv.Itoa(int(code))},
		{Name: "grpc-message", Value: percentEncode(text)}}
	if !s.headersSent {
		status = append([]hpack.HeaderField{{Name: ":status", Value: "200"},
			{Name: "content-type", Value: "application/grpc"}}, status...)
	}
	c.out.headers(s.callerID, status, true)
	if !s.toUp.ended {
		c.out.u32(frameRSTStream, s.callerID, errCodeNo)
	}
	t.add(c.out)
	r.metrics.called(s.method, code)
	r.metrics.openStreams.Add(-1)
}

// readUpstream reads a replica's frames until its connection ends.
func (r *router) readUpstream(u *upstream, gen int, conn io.Reader) error {
	br := bufio.NewReaderSize(conn, 32*1024)
	fr := &frameReader{r: br}
	var block []byte
	var t touched
	for {
		h, payload, err := fr.next()
		if err != nil {
			return err
		}
		var fields []hpack.HeaderField
		if h.typ == frameHeaders {
			if block, err = fr.headerBlock(h, payload, block); err != nil {
				return err
			}
			if fields, err = u.dec.DecodeFull(block); err != nil {
				return err
			}
		} else if h.typ == frameContinuation || h.typ == framePushPromise {
			return errProtocol
		}
		r.mu.Lock()
		if u.gen != gen {
			r.mu.Unlock()
			return nil
		}
		err = r.upstreamFrame(u, h, payload, fields, &t)
		r.mu.Unlock()
		if err != nil {
			return err
		}
		if br.Buffered() == 0 {
			t.flush()
		}
	}
}

func (r *router) upstreamFrame(u *upstream, h frameHeader, payload []byte,
	fields []hpack.HeaderField, t *touched) error {
	end := h.flags&flagEndStream != 0
	switch h.typ {
	case frameSettings:
		if h.flags&flagAck != 0 {
			return nil
		}
		r.applySettings(payload, &u.initWindow, &u.maxStreams, u.out, func(delta int64) {
			for _, s := range u.streams {
				s.toUp.send += delta
			}
		})
		u.out.frame(frameHeader{typ: frameSettings, flags: flagAck}, nil)
		t.add(u.out)
		if !u.ready {
			u.ready = true
			r.openHealthLocked(u, t)
		}
		for _, s := range u.streams {
			r.drainToUpLocked(s, t)
		}
	case framePing:
		if h.flags&flagAck == 0 {
			u.out.frame(frameHeader{typ: framePing, flags: flagAck}, payload)
			t.add(u.out)
		}
	case frameGoAway:
		if len(payload) < 8 {
			return errProtocol
		}
		last := binary.BigEndian.Uint32(payload[0:4]) & 0x7fffffff
		u.goingAway = true
		for id, s := range u.streams {
			if id > last && s.caller != nil {
				// Never processed: the caller retries it (on another replica).
				delete(u.streams, id)
				r.refuseLocked(s, t)
			}
		}
		r.updatePeerMetricsLocked()
		if len(u.streams) == 0 {
			_ = u.conn.Close()
		}
	case frameWindowUpdate:
		if len(payload) < 4 {
			return errProtocol
		}
		n := int64(binary.BigEndian.Uint32(payload) & 0x7fffffff)
		if h.streamID == 0 {
			u.sendConn += n
			for _, s := range u.streams {
				r.drainToUpLocked(s, t)
			}
		} else if s := u.streams[h.streamID]; s != nil {
			s.toUp.send += n
			r.drainToUpLocked(s, t)
		}
	case frameRSTStream:
		s := u.streams[h.streamID]
		if s == nil {
			return nil
		}
		delete(u.streams, h.streamID)
		if h.streamID == u.healthID {
			r.healthEndedLocked(u, codes.Unavailable)
			return nil
		}
		code := binary.BigEndian.Uint32(append(payload, 0, 0, 0, 0)[:4])
		if code == errCodeRefused && !s.headersSent {
			r.refuseLocked(s, t)
		} else {
			r.failLocked(s, rstCode(payload), "plugin-front: the replica reset the call", t)
		}
		r.closeIfGoneLocked(u)
	case frameHeaders:
		if h.streamID == u.healthID && u.healthID != 0 {
			if end {
				delete(u.streams, h.streamID)
				r.healthEndedLocked(u, grpcStatus(fields))
			}
			return nil
		}
		s := u.streams[h.streamID]
		if s == nil || s.done {
			return nil
		}
		if !s.headersSent {
			s.headersSent = true
			if !end || len(s.toCaller.pending) == 0 {
				s.caller.out.headers(s.callerID, fields, end)
				t.add(s.caller.out)
				if end {
					r.finishLocked(s, fields, t)
				}
				return nil
			}
		}
		if !end {
			return errProtocol
		}
		// Trailers: after the data still waiting for the caller's window.
		s.toCaller.pending = append(s.toCaller.pending, chunk{trailers: fields,
			isTrailer: true})
		r.drainToCallerLocked(s, t)
	case frameData:
		data := dataPayload(h, payload)
		if h.streamID == u.healthID && u.healthID != 0 {
			r.healthDataLocked(u, data)
			r.creditUpLocked(u, nil, int64(h.length), t)
			return nil
		}
		s := u.streams[h.streamID]
		if s == nil || s.done {
			r.creditUpLocked(u, nil, int64(h.length), t)
			return nil
		}
		if pad := int64(h.length) - int64(len(data)); pad > 0 {
			r.creditUpLocked(u, s, pad, t)
		}
		s.toCaller.pending = append(s.toCaller.pending, chunk{data: bytes.Clone(data), end: end})
		r.drainToCallerLocked(s, t)
	}
	return nil
}

// applySettings applies a peer's SETTINGS to what this port sends it.
func (r *router) applySettings(payload []byte, initWindow *int64, maxStreams *uint32,
	out *outConn, adjust func(int64)) {
	for i := 0; i+6 <= len(payload); i += 6 {
		v := binary.BigEndian.Uint32(payload[i+2:])
		switch binary.BigEndian.Uint16(payload[i:]) {
		case settingInitWindow:
			adjust(int64(v) - *initWindow)
			*initWindow = int64(v)
		case settingMaxStreams:
			if maxStreams != nil {
				*maxStreams = v
			}
		case settingHeaderTableSize:
			out.enc.SetMaxDynamicTableSizeLimit(v)
		}
	}
}

// refuseLocked resets a call its replica never processed with REFUSED_STREAM: gRPC
// clients retry such calls transparently.
func (r *router) refuseLocked(s *rStream, t *touched) {
	if s.done {
		return
	}
	s.done = true
	delete(s.caller.streams, s.callerID)
	if !s.caller.closed {
		s.caller.out.u32(frameRSTStream, s.callerID, errCodeRefused)
		t.add(s.caller.out)
	}
	r.metrics.called(s.method, codes.Unavailable)
	r.metrics.openStreams.Add(-1)
}

func (r *router) finishLocked(s *rStream, trailers []hpack.HeaderField, t *touched) {
	s.done = true
	s.toCaller.ended = true
	delete(s.caller.streams, s.callerID)
	if s.up != nil {
		delete(s.up.streams, s.upID)
		if !s.toUp.ended && !s.up.out.closed.Load() {
			s.up.out.u32(frameRSTStream, s.upID, errCodeNo)
			t.add(s.up.out)
		}
		r.closeIfGoneLocked(s.up)
	}
	if !s.toUp.ended && !s.caller.closed {
		s.caller.out.u32(frameRSTStream, s.callerID, errCodeNo)
		t.add(s.caller.out)
	}
	r.metrics.called(s.method, grpcStatus(trailers))
	r.metrics.openStreams.Add(-1)
}

// closeIfGoneLocked closes a replica connection that is going away once it is idle.
func (r *router) closeIfGoneLocked(u *upstream) {
	if (u.goingAway || !u.wanted) && len(u.streams) <= boolInt(u.healthID != 0) &&
		u.conn != nil {
		_ = u.conn.Close()
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// drainToCallerLocked sends what the caller's windows allow.
func (r *router) drainToCallerLocked(s *rStream, t *touched) {
	c := s.caller
	w := &s.toCaller
	for len(w.pending) > 0 && !s.done {
		next := &w.pending[0]
		if next.isTrailer {
			c.out.headers(s.callerID, next.trailers, true)
			t.add(c.out)
			w.pending = w.pending[1:]
			r.finishLocked(s, next.trailers, t)
			return
		}
		n := min(int64(len(next.data)), w.send, c.sendConn)
		if n <= 0 && len(next.data) > 0 {
			return
		}
		last := n == int64(len(next.data))
		flags := uint8(0)
		if last && next.end {
			flags = flagEndStream
		}
		c.out.frame(frameHeader{typ: frameData, flags: flags, streamID: s.callerID},
			next.data[:n])
		t.add(c.out)
		w.send -= n
		c.sendConn -= n
		r.f.metrics.fromPlugin.Add(uint64(n))
		r.creditUpLocked(s.up, s, n, t)
		if last {
			end := next.end
			w.pending = w.pending[1:]
			if end {
				// The stream ended without trailers: a broken response.
				r.finishLocked(s, nil, t)
				return
			}
		} else {
			next.data = next.data[n:]
		}
	}
}

// creditUpLocked gives a replica window back for bytes passed on to the caller (or
// dropped).
func (r *router) creditUpLocked(u *upstream, s *rStream, n int64, t *touched) {
	if u == nil || u.out == nil || u.out.closed.Load() {
		return
	}
	u.unackedConn += n
	if s != nil {
		s.toCaller.unacked += n
		if !s.done && s.toCaller.unacked >= routerStreamWindow/4 {
			u.out.u32(frameWindowUpdate, s.upID, uint32(s.toCaller.unacked))
			s.toCaller.unacked = 0
			t.add(u.out)
		}
	}
	if u.unackedConn >= routerConnWindow/4 {
		u.out.u32(frameWindowUpdate, 0, uint32(u.unackedConn))
		u.unackedConn = 0
		t.add(u.out)
	}
}

// drainToUpLocked sends the caller's data the replica's windows allow.
func (r *router) drainToUpLocked(s *rStream, t *touched) {
	u := s.up
	if u == nil || s.done || u.out == nil {
		return
	}
	w := &s.toUp
	for len(w.pending) > 0 {
		next := &w.pending[0]
		n := min(int64(len(next.data)), w.send, u.sendConn)
		if n <= 0 && len(next.data) > 0 {
			return
		}
		last := n == int64(len(next.data))
		flags := uint8(0)
		if last && next.end {
			flags = flagEndStream
			w.ended = true
		}
		u.out.frame(frameHeader{typ: frameData, flags: flags, streamID: s.upID}, next.data[:n])
		t.add(u.out)
		w.send -= n
		u.sendConn -= n
		r.f.metrics.toPlugin.Add(uint64(n))
		r.creditCallerLocked(s.caller, s, n, t)
		if last {
			w.pending = w.pending[1:]
		} else {
			next.data = next.data[n:]
		}
	}
}

// creditCallerLocked gives the caller window back for bytes passed on to the replica (or
// dropped: s nil).
func (r *router) creditCallerLocked(c *callerConn, s *rStream, n int64, t *touched) {
	if c.closed {
		return
	}
	c.unackedConn += n
	if s != nil {
		s.toUp.unacked += n
	}
	if s != nil && !s.toUp.ended && s.toUp.unacked >= routerStreamWindow/4 {
		c.out.u32(frameWindowUpdate, s.callerID, uint32(s.toUp.unacked))
		s.toUp.unacked = 0
		t.add(c.out)
	}
	if c.unackedConn >= routerConnWindow/4 {
		c.out.u32(frameWindowUpdate, 0, uint32(c.unackedConn))
		c.unackedConn = 0
		t.add(c.out)
	}
}

// pickLocked is the round robin: the next replica that is up and SERVING; while draining,
// this pod's own plugin only when no other replica is up.
func (r *router) pickLocked() *upstream {
	usable := func(u *upstream, needHealthy bool) bool {
		if !u.ready || u.goingAway || u.out == nil || u.out.closed.Load() ||
			(needHealthy && !u.healthy) || uint32(len(u.streams)) >= u.maxStreams {
			return false
		}
		return !(u.local && r.draining && r.anyPeerLocked())
	}
	for _, needHealthy := range []bool{true, false} {
		for i := range r.order {
			u := r.order[(r.next+i)%len(r.order)]
			if usable(u, needHealthy) {
				r.next = (r.next + i + 1) % len(r.order)
				return u
			}
		}
	}
	return nil
}

func (r *router) anyPeerLocked() bool {
	for _, u := range r.order {
		if !u.local && u.ready && u.healthy && !u.goingAway {
			return true
		}
	}
	return false
}

// --- health of the replicas ------------------------------------------------------------

var healthRequest = grpcMessage([]byte{0x0a, 0x06, 'p', 'l', 'u', 'g', 'i', 'n'})

// openHealthLocked watches the replica's "plugin" health on its own connection.
func (r *router) openHealthLocked(u *upstream, t *touched) {
	id := u.nextID
	u.nextID += 2
	u.healthID = id
	u.health = filterStream{}
	u.healthBuf = u.healthBuf[:0]
	s := &rStream{up: u, upID: id, done: true} // never routed to a caller
	u.streams[id] = s
	u.out.headers(id, []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/grpc.health.v1.Health/Watch"},
		{Name: ":authority", Value: "plugin"}, {Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"}, {Name: "user-agent", Value: "plugin-front"},
	}, false)
	u.out.frame(frameHeader{typ: frameData, flags: flagEndStream, streamID: id}, healthRequest)
	t.add(u.out)
}

func (r *router) healthDataLocked(u *upstream, data []byte) {
	u.healthBuf = append(u.healthBuf, data...)
	for len(u.healthBuf) >= 5 {
		size := int(binary.BigEndian.Uint32(u.healthBuf[1:5]))
		if len(u.healthBuf) < 5+size {
			return
		}
		message := u.healthBuf[5 : 5+size]
		u.healthBuf = u.healthBuf[5+size:]
		healthy := len(message) >= 2 && message[0] == 0x08 && message[1] == 0x01
		if healthy != u.healthy {
			u.healthy = healthy
			r.f.log.Info("replica health", "address", u.address, "serving", healthy)
		}
		r.updatePeerMetricsLocked()
		if healthy {
			r.readyOnce.Do(func() { close(r.readyCh) })
		}
	}
}

// healthEndedLocked: a replica without a health service counts as serving (like gRPC's
// health checking); any other end is retried a second later.
func (r *router) healthEndedLocked(u *upstream, code codes.Code) {
	id := u.healthID
	u.healthID = 0
	delete(u.streams, id)
	if code == codes.Unimplemented {
		u.healthy = true
		r.updatePeerMetricsLocked()
		r.readyOnce.Do(func() { close(r.readyCh) })
		return
	}
	u.healthy = false
	r.updatePeerMetricsLocked()
	gen := u.gen
	time.AfterFunc(time.Second, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if u.gen != gen || !u.ready || u.healthID != 0 || u.out == nil || u.out.closed.Load() {
			return
		}
		var t touched
		r.openHealthLocked(u, &t)
		go t.flush()
	})
}

// --- callers ---------------------------------------------------------------------------

func (r *router) serve() error {
	select { // the first calls should find a replica (bounded: they get UNAVAILABLE later)
	case <-r.readyCh:
	case <-time.After(3 * time.Second):
	}
	for {
		conn, err := r.listener.Accept()
		if err != nil {
			r.mu.Lock()
			stopped := r.stopped
			r.mu.Unlock()
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
		go r.serveCaller(conn)
	}
}

func (r *router) serveCaller(conn net.Conn) {
	c := &callerConn{out: newOutConn(conn), streams: map[uint32]*rStream{},
		sendConn: defaultWindow, initWindow: defaultWindow, done: make(chan struct{})}
	c.dec = hpack.NewDecoder(4096, nil)
	c.dec.SetAllowedMaxDynamicTableSize(64 * 1024)
	c.dec.SetMaxStringLength(maxHeaderBlock)
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		_ = conn.Close()
		return
	}
	r.callers[c] = struct{}{}
	c.out.frame(frameHeader{typ: frameSettings}, settingsPayload(1000))
	c.out.u32(frameWindowUpdate, 0, routerConnWindow-defaultWindow)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		var t touched
		c.closed = true
		for _, s := range c.streams {
			if !s.done {
				s.done = true
				if s.up != nil && s.up.out != nil {
					delete(s.up.streams, s.upID)
					s.up.out.u32(frameRSTStream, s.upID, errCodeCancel)
					t.add(s.up.out)
					r.closeIfGoneLocked(s.up)
				}
				r.metrics.called(s.method, codes.Canceled)
				r.metrics.openStreams.Add(-1)
			}
		}
		c.streams = nil
		delete(r.callers, c)
		r.mu.Unlock()
		t.flush()
		_ = conn.Close()
		close(c.done)
	}()
	if err := c.out.flush(); err != nil {
		return
	}
	br := bufio.NewReaderSize(c.out.io, 32*1024)
	var preface [len(clientPreface)]byte
	if _, err := io.ReadFull(br, preface[:]); err != nil || string(preface[:]) != clientPreface {
		return
	}
	fr := &frameReader{r: br}
	var block []byte
	var t touched
	for {
		h, payload, err := fr.next()
		if err != nil {
			return
		}
		var fields []hpack.HeaderField
		if h.typ == frameHeaders {
			if block, err = fr.headerBlock(h, payload, block); err != nil {
				return
			}
			if fields, err = c.dec.DecodeFull(block); err != nil {
				return
			}
		} else if h.typ == frameContinuation || h.typ == framePushPromise {
			return
		}
		r.mu.Lock()
		ok := r.callerFrame(c, h, payload, fields, &t)
		r.mu.Unlock()
		if !ok {
			t.flush()
			return
		}
		if br.Buffered() == 0 {
			t.flush()
		}
	}
}

func (r *router) callerFrame(c *callerConn, h frameHeader, payload []byte,
	fields []hpack.HeaderField, t *touched) bool {
	end := h.flags&flagEndStream != 0
	switch h.typ {
	case frameSettings:
		if h.flags&flagAck != 0 {
			return true
		}
		r.applySettings(payload, &c.initWindow, nil, c.out, func(delta int64) {
			for _, s := range c.streams {
				s.toCaller.send += delta
			}
		})
		c.out.frame(frameHeader{typ: frameSettings, flags: flagAck}, nil)
		t.add(c.out)
		for _, s := range c.streams {
			r.drainToCallerLocked(s, t)
		}
	case framePing:
		if h.flags&flagAck == 0 {
			c.out.frame(frameHeader{typ: framePing, flags: flagAck}, payload)
			t.add(c.out)
		}
	case frameGoAway:
		c.goingAway = true
	case frameWindowUpdate:
		if len(payload) < 4 {
			return false
		}
		n := int64(binary.BigEndian.Uint32(payload) & 0x7fffffff)
		if h.streamID == 0 {
			c.sendConn += n
			for _, s := range c.streams {
				r.drainToCallerLocked(s, t)
			}
		} else if s := c.streams[h.streamID]; s != nil {
			s.toCaller.send += n
			r.drainToCallerLocked(s, t)
		}
	case frameRSTStream:
		s := c.streams[h.streamID]
		if s == nil {
			return true
		}
		delete(c.streams, h.streamID)
		if !s.done {
			s.done = true
			if s.up != nil && s.up.out != nil {
				delete(s.up.streams, s.upID)
				s.up.out.u32(frameRSTStream, s.upID, errCodeCancel)
				t.add(s.up.out)
				r.closeIfGoneLocked(s.up)
			}
			r.metrics.called(s.method, codes.Canceled)
			r.metrics.openStreams.Add(-1)
		}
	case frameData:
		s := c.streams[h.streamID]
		if s == nil || s.done || s.toUp.ended {
			r.creditCallerLocked(c, nil, int64(h.length), t) // not for a replica
			return true
		}
		data := dataPayload(h, payload)
		if pad := int64(h.length) - int64(len(data)); pad > 0 {
			r.creditCallerLocked(c, s, pad, t)
		}
		s.toUp.pending = append(s.toUp.pending, chunk{data: bytes.Clone(data), end: end})
		if end && len(data) == 0 {
			s.toUp.pending[len(s.toUp.pending)-1].data = []byte{}
		}
		r.drainToUpLocked(s, t)
	case frameHeaders:
		return r.callerHeaders(c, h.streamID, fields, end, t)
	}
	return true
}

func (r *router) callerHeaders(c *callerConn, id uint32, fields []hpack.HeaderField, end bool,
	t *touched) bool {
	if s := c.streams[id]; s != nil {
		// Request trailers.
		if !s.done && !s.toUp.ended {
			if len(s.toUp.pending) > 0 {
				// gRPC requests carry no trailers; keep at least where the request ends.
				s.toUp.pending = append(s.toUp.pending, chunk{data: []byte{}, end: end})
				return true
			}
			s.up.out.headers(s.upID, withoutPseudo(fields), end)
			s.toUp.ended = end
			t.add(s.up.out)
		}
		return true
	}
	if id%2 == 0 || id <= c.lastStream {
		return id%2 == 1
	}
	c.lastStream = id
	if c.goingAway || r.stopped {
		c.out.u32(frameRSTStream, id, errCodeRefused)
		t.add(c.out)
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
	s := &rStream{caller: c, callerID: id, method: call.method,
		toCaller: window{send: c.initWindow}, watch: call.kind == kindHealthWatch}
	s.toUp.ended = false
	switch {
	case call.kind == kindRefused:
		r.metrics.refused[call.refused].Add(1)
		r.f.logRefusal(r.metrics.name, path)
		r.answerLocked(c, id, end, nil, codes.Unimplemented, refusal(path), t)
		return true
	case r.f.isDraining() && (call.kind == kindHealthCheck || call.kind == kindHealthWatch):
		r.metrics.called(call.method, codes.OK)
		r.answerLocked(c, id, end, notServing, codes.OK, "", t)
		return true
	}
	var u *upstream
	if call.kind == kindPlugin {
		u = r.pickLocked()
	} else if r.local.ready && r.local.out != nil { // health: this replica's own
		u = r.local
	}
	if u == nil {
		r.metrics.called(call.method, codes.Unavailable)
		r.answerLocked(c, id, end, nil, codes.Unavailable,
			"plugin-front: no replica of the plugin is ready", t)
		return true
	}
	if call.kind == kindPlugin {
		if u.local {
			r.f.metrics.balancedLocal.Add(1)
		} else {
			r.f.metrics.balancedPeer.Add(1)
		}
	}
	s.up, s.upID = u, u.nextID
	u.nextID += 2
	if u.nextID > 1<<31-2 {
		u.goingAway = true // ids run out: a fresh connection after this one
	}
	s.toUp.send = u.initWindow
	c.streams[id] = s
	u.streams[s.upID] = s
	r.metrics.openStreams.Add(1)
	u.out.headers(s.upID, fields, end)
	s.toUp.ended = end
	t.add(u.out)
	return true
}

// answerLocked sends a whole response from here.
func (r *router) answerLocked(c *callerConn, id uint32, requestEnded bool, message []byte,
	code codes.Code, text string, t *touched) {
	status := []hpack.HeaderField{{Name: "grpc-status", Value: strconv.Itoa(int(code))}}
	if text != "" {
		status = append(status, hpack.HeaderField{Name: "grpc-message",
			Value: percentEncode(text)})
	}
	head := []hpack.HeaderField{{Name: ":status", Value: "200"},
		{Name: "content-type", Value: "application/grpc"}}
	if message == nil {
		c.out.headers(id, append(head, status...), true)
	} else {
		c.out.headers(id, head, false)
		c.out.frame(frameHeader{typ: frameData, streamID: id}, grpcMessage(message))
		c.out.headers(id, status, true)
	}
	if !requestEnded {
		c.out.u32(frameRSTStream, id, errCodeNo)
	}
	t.add(c.out)
}

// drain: this pod's plugin stops getting balanced calls once another replica is up, and
// health watches through this port are told NOT_SERVING.
func (r *router) drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.draining = true
	var t touched
	for c := range r.callers {
		for _, s := range c.streams {
			if s.watch && !s.done {
				r.failWatchLocked(s, &t)
			}
		}
	}
	go t.flush()
}

// failWatchLocked ends a watch with NOT_SERVING (its messages are small and whole in one
// DATA frame, so nothing is pending between messages).
func (r *router) failWatchLocked(s *rStream, t *touched) {
	if len(s.toCaller.pending) > 0 {
		return // it ends with its own trailers
	}
	s.done = true
	c := s.caller
	delete(c.streams, s.callerID)
	if s.up != nil {
		delete(s.up.streams, s.upID)
		if s.up.out != nil {
			s.up.out.u32(frameRSTStream, s.upID, errCodeCancel)
			t.add(s.up.out)
		}
	}
	if !s.headersSent {
		c.out.headers(s.callerID, []hpack.HeaderField{{Name: ":status", Value: "200"},
			{Name: "content-type", Value: "application/grpc"}}, false)
	}
	c.out.frame(frameHeader{typ: frameData, streamID: s.callerID}, grpcMessage(notServing))
	c.out.headers(s.callerID, []hpack.HeaderField{{Name: "grpc-status", Value: "0"}}, true)
	if !s.toUp.ended {
		c.out.u32(frameRSTStream, s.callerID, errCodeNo)
	}
	t.add(c.out)
	r.metrics.called(s.method, codes.OK)
	r.metrics.openStreams.Add(-1)
}

// stop: GOAWAY to every caller, calls in progress may finish within timeout, then every
// connection is closed.
func (r *router) stop(timeout time.Duration) {
	r.mu.Lock()
	r.stopped = true
	callers := make([]*callerConn, 0, len(r.callers))
	var t touched
	for c := range r.callers {
		callers = append(callers, c)
		c.goingAway = true
		var b [8]byte
		binary.BigEndian.PutUint32(b[0:4], c.lastStream)
		c.out.frame(frameHeader{typ: frameGoAway}, b[:])
		t.add(c.out)
	}
	r.mu.Unlock()
	t.flush()
	_ = r.listener.Close()
	deadline := time.Now().Add(timeout)
	for _, c := range callers {
		for time.Now().Before(deadline) {
			r.mu.Lock()
			idle := len(c.streams) == 0 || c.closed
			r.mu.Unlock()
			if idle {
				break
			}
			select {
			case <-c.done:
			case <-time.After(10 * time.Millisecond):
			}
		}
		_ = c.out.conn.Close()
	}
	r.mu.Lock()
	for _, u := range append([]*upstream{r.local}, r.order...) {
		u.wanted = false
		if u.conn != nil {
			_ = u.conn.Close()
		}
	}
	r.mu.Unlock()
}
