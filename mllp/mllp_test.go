package mllp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// start serves h on a loopback port and returns its address.
func start(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, ErrServerClose) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func echo(_ context.Context, msg []byte) []byte { return append([]byte("ACK:"), msg...) }

func TestManyMessagesOneConnection(t *testing.T) {
	var stored atomic.Int64
	addr := start(t, &Server{Handler: HandlerFunc(func(ctx context.Context, msg []byte) []byte {
		stored.Add(1)
		return echo(ctx, msg)
	})})
	c, err := Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 500 {
		msg := fmt.Appendf(nil, "MSH|^~\\&|%d\rPID|1", i)
		ack, err := c.Send(context.Background(), msg)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := append([]byte("ACK:"), msg...); !bytes.Equal(ack, want) {
			t.Fatalf("message %d: ack %q, want %q", i, ack, want)
		}
	}
	if stored.Load() != 500 {
		t.Errorf("handled %d, want 500", stored.Load())
	}
}

func TestSeveralConnectionsAtOnce(t *testing.T) {
	addr := start(t, &Server{Handler: HandlerFunc(echo)})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for n := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := Dial(context.Background(), addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := range 100 {
				msg := fmt.Appendf(nil, "conn %d msg %d", n, i)
				ack, err := c.Send(context.Background(), msg)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(ack, append([]byte("ACK:"), msg...)) {
					errs <- fmt.Errorf("conn %d: ack %q for %q", n, ack, msg)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDisconnectMidMessage(t *testing.T) {
	var handled atomic.Int64
	addr := start(t, &Server{Handler: HandlerFunc(func(ctx context.Context, msg []byte) []byte {
		handled.Add(1)
		return echo(ctx, msg)
	})})
	// A frame cut off before its end block is never handed over.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte{StartBlock})
	conn.Write([]byte("MSH|^~\\&|half a messa"))
	conn.Close()
	// The server goes on serving others.
	c, err := Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Send(context.Background(), []byte("whole")); err != nil {
		t.Fatal(err)
	}
	if n := handled.Load(); n != 1 {
		t.Errorf("handled %d messages, want only the whole one", n)
	}
}

func TestACKOnlyAfterHandlerReturned(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var returned atomic.Bool
	addr := start(t, &Server{Handler: HandlerFunc(func(ctx context.Context, msg []byte) []byte {
		close(entered)
		<-release
		returned.Store(true)
		return []byte("stored")
	})})
	c, err := Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan []byte, 1)
	go func() {
		ack, err := c.Send(context.Background(), []byte("msg"))
		if err != nil {
			t.Error(err)
		}
		got <- ack
	}()
	<-entered
	select {
	case ack := <-got:
		t.Fatalf("ACK %q arrived while the handler was still storing", ack)
	default:
	}
	close(release)
	ack := <-got
	if !returned.Load() || string(ack) != "stored" {
		t.Errorf("ack %q, handler returned %v", ack, returned.Load())
	}
}

func TestShutdownLetsRunningHandlerAnswer(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	s := &Server{Handler: HandlerFunc(func(ctx context.Context, msg []byte) []byte {
		close(entered)
		<-release
		return []byte("done")
	})}
	addr := start(t, s)
	c, err := Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan error, 1)
	go func() {
		ack, err := c.Send(context.Background(), []byte("msg"))
		if err == nil && string(ack) != "done" {
			err = fmt.Errorf("ack %q", ack)
		}
		got <- err
	}()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	close(release)
	if err := <-got; err != nil {
		t.Fatalf("in-flight message: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(context.Background(), addr); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

func TestOversizeAndBadFraming(t *testing.T) {
	var handled atomic.Int64
	addr := start(t, &Server{MaxMessageBytes: 64, Handler: HandlerFunc(func(ctx context.Context, msg []byte) []byte {
		handled.Add(1)
		return echo(ctx, msg)
	})})
	for name, payload := range map[string][]byte{
		"oversize":       append(append([]byte{StartBlock}, bytes.Repeat([]byte("x"), 100)...), EndBlock, CarriageReturn),
		"no CR after FS": append(append([]byte{StartBlock}, "abc"...), EndBlock, 'x'),
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(payload)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(conn)
		conn.Close()
		if len(b) != 0 || err != nil {
			t.Errorf("%s: got %q, %v; want the connection closed without an answer", name, b, err)
		}
	}
	if handled.Load() != 0 {
		t.Errorf("handled %d bad frames", handled.Load())
	}
}

func TestIdleTimeout(t *testing.T) {
	addr := start(t, &Server{IdleTimeout: 50 * time.Millisecond, Handler: HandlerFunc(echo)})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := bufio.NewReader(conn).ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("idle connection: %v, want EOF from the server closing it", err)
	}
}

func TestReaderSkipsNoiseBetweenFrames(t *testing.T) {
	in := []byte("\r\n\x0bone\x1c\r\n\n\x0btwo\x1c\r")
	r := NewReader(bufio.NewReader(bytes.NewReader(in)), 100)
	for _, want := range []string{"one", "two"} {
		got, err := r.ReadMessage()
		if err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	if _, err := r.ReadMessage(); !errors.Is(err, io.EOF) {
		t.Errorf("end: %v, want EOF", err)
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	addr := start(b, &Server{Handler: HandlerFunc(func(_ context.Context, msg []byte) []byte { return []byte("MSH|^~\\&|ACK\rMSA|AA|1\r") })})
	c, err := Dial(context.Background(), addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("OBX|1|NM|718-7^Hemoglobin^LN||12.5|g/dL|13-18|L|||F\r"), 20)
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Send(context.Background(), msg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "roundtrips/s")
}
