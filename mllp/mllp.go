// Package mllp serves HL7 v2 over the Minimal Lower Layer Protocol: each
// message travels as 0x0B <message> 0x1C 0x0D on a TCP connection, and the
// receiver answers each one, in order, with an acknowledgement framed the
// same way.
//
// A message is acknowledged only after the Handler returned: the handler
// stores durably and builds the ACK, so an acknowledged message is never lost.
package mllp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Frame bytes.
const (
	StartBlock     = 0x0B
	EndBlock       = 0x1C
	CarriageReturn = 0x0D
)

// Defaults.
const (
	DefaultMaxMessageBytes = 16 << 20
	DefaultIdleTimeout     = 5 * time.Minute
	DefaultWriteTimeout    = 30 * time.Second
)

// Errors.
var (
	ErrTooLarge    = errors.New("mllp: message exceeds the size limit")
	ErrFraming     = errors.New("mllp: bad framing")
	ErrServerClose = errors.New("mllp: server closed")
)

// Handler handles one message and returns the acknowledgement to send
// (without framing). It runs on the connection's goroutine: messages of one
// connection are handled in order. A nil ACK closes the connection without
// answering.
type Handler interface {
	HandleMessage(ctx context.Context, msg []byte) (ack []byte)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, msg []byte) []byte

// HandleMessage calls f.
func (f HandlerFunc) HandleMessage(ctx context.Context, msg []byte) []byte { return f(ctx, msg) }

// Server is an MLLP listener.
type Server struct {
	// Handler answers messages. Required.
	Handler Handler
	// MaxMessageBytes bounds one message; DefaultMaxMessageBytes when 0. A
	// larger message closes the connection without an ACK (the sender
	// retries elsewhere or alerts: nothing was stored).
	MaxMessageBytes int
	// IdleTimeout closes a connection with no complete message for this
	// long; DefaultIdleTimeout when 0.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one ACK; DefaultWriteTimeout when 0.
	WriteTimeout time.Duration
	// Logger receives connection events (never message content); discarded when nil.
	Logger *slog.Logger
	// Opened, when set, is called for each connection accepted; the
	// function it returns when the connection closes (metrics).
	Opened func() (closed func())

	mu       sync.Mutex
	ln       map[net.Listener]struct{}
	conns    map[net.Conn]bool // conn -> busy in a handler
	closing  bool
	wg       sync.WaitGroup
	shutdown chan struct{}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) init() {
	if s.ln == nil {
		s.ln = map[net.Listener]struct{}{}
		s.conns = map[net.Conn]bool{}
		s.shutdown = make(chan struct{})
	}
}

// ListenAndServe listens on addr and serves until Shutdown.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mllp: listen: %w", err)
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln until Shutdown or Close; it returns
// ErrServerClose then.
func (s *Server) Serve(ln net.Listener) error {
	if s.Handler == nil {
		return errors.New("mllp: no handler")
	}
	s.mu.Lock()
	s.init()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClose
	}
	s.ln[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.ln, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClose
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("mllp: accept: %w", err)
		}
		delay = 0
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			conn.Close()
			return ErrServerClose
		}
		s.conns[conn] = false
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(conn)
	}
}

// Shutdown stops accepting, closes idle connections, lets handlers that
// are running finish and send their ACK, then closes their connections. When
// ctx ends first, the remaining connections are closed (their messages
// unacknowledged, so the senders resend them).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.init()
	if !s.closing {
		s.closing = true
		close(s.shutdown)
	}
	for ln := range s.ln {
		ln.Close()
	}
	for c, busy := range s.conns {
		if !busy {
			c.Close()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.init()
	if !s.closing {
		s.closing = true
		close(s.shutdown)
	}
	for ln := range s.ln {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return nil
}

func (s *Server) setBusy(c net.Conn, busy bool) (closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = busy
	return s.closing
}

func (s *Server) serveConn(conn net.Conn) {
	defer s.wg.Done()
	if s.Opened != nil {
		defer s.Opened()()
	}
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	log := s.logger().With(slog.String("remote", conn.RemoteAddr().String()))
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	wt := s.WriteTimeout
	if wt <= 0 {
		wt = DefaultWriteTimeout
	}
	limit := s.MaxMessageBytes
	if limit <= 0 {
		limit = DefaultMaxMessageBytes
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := NewReader(bufio.NewReaderSize(conn, 32<<10), limit)
	w := bufio.NewWriterSize(conn, 4<<10)
	for {
		conn.SetReadDeadline(time.Now().Add(idle))
		msg, err := r.ReadMessage()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
			case errors.Is(err, io.ErrUnexpectedEOF):
				log.Info("mllp: client disconnected mid-message; nothing acknowledged")
			case errors.Is(err, ErrTooLarge), errors.Is(err, ErrFraming):
				log.Warn("mllp: closing connection", slog.String("reason", err.Error()))
			default:
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					log.Info("mllp: idle connection closed")
				} else if !s.isClosing() {
					log.Info("mllp: read failed", slog.String("err", err.Error()))
				}
			}
			return
		}
		if s.setBusy(conn, true) {
			// Shutting down: do not start new work; the sender resends.
			return
		}
		ack := s.Handler.HandleMessage(ctx, msg)
		if ack == nil {
			return
		}
		// The connection stays busy until its ACK is written, so that
		// Shutdown does not close it between the handler and the answer.
		conn.SetWriteDeadline(time.Now().Add(wt))
		if err := WriteFrame(w, ack); err != nil {
			log.Info("mllp: writing ACK failed", slog.String("err", err.Error()))
			return
		}
		if err := w.Flush(); err != nil {
			log.Info("mllp: writing ACK failed", slog.String("err", err.Error()))
			return
		}
		if closing := s.setBusy(conn, false); closing {
			return
		}
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Reader reads MLLP frames.
type Reader struct {
	r   *bufio.Reader
	max int
}

// NewReader returns a Reader of frames up to limit bytes of payload.
func NewReader(r *bufio.Reader, limit int) *Reader { return &Reader{r: r, max: limit} }

// ReadMessage returns the next frame's payload. Bytes before a start block
// (line noise, keep-alive newlines) are skipped. io.EOF means a clean end
// between frames; io.ErrUnexpectedEOF a connection lost inside a frame.
func (r *Reader) ReadMessage() ([]byte, error) {
	for {
		b, err := r.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if b == StartBlock {
			break
		}
	}
	var msg []byte
	for {
		chunk, err := r.r.ReadSlice(EndBlock)
		if len(msg)+len(chunk) > r.max+1 {
			return nil, ErrTooLarge
		}
		msg = append(msg, chunk...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	msg = msg[:len(msg)-1] // the end block
	b, err := r.r.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if b != CarriageReturn {
		return nil, fmt.Errorf("%w: end block followed by 0x%02x, not CR", ErrFraming, b)
	}
	return msg, nil
}

// WriteFrame writes one framed message.
func WriteFrame(w io.Writer, msg []byte) error {
	buf := make([]byte, 0, len(msg)+3)
	buf = append(buf, StartBlock)
	buf = append(buf, msg...)
	buf = append(buf, EndBlock, CarriageReturn)
	_, err := w.Write(buf)
	return err
}

// Client sends messages over one connection and reads their ACKs.
type Client struct {
	conn net.Conn
	r    *Reader
}

// Dial connects to an MLLP server.
func Dial(ctx context.Context, addr string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mllp: dial: %w", err)
	}
	return &Client{conn: conn, r: NewReader(bufio.NewReader(conn), DefaultMaxMessageBytes)}, nil
}

// Send writes one message and waits for its ACK.
func (c *Client) Send(ctx context.Context, msg []byte) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
		defer c.conn.SetDeadline(time.Time{})
	}
	if err := WriteFrame(c.conn, msg); err != nil {
		return nil, fmt.Errorf("mllp: send: %w", err)
	}
	ack, err := c.r.ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("mllp: read ACK: %w", err)
	}
	return ack, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
