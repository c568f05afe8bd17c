package pgwire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// TestWriteAwaitingAnswerReturnsWithTheAnswer: the message reaches the
// peer whole, and the call returns only once the peer's answer came (the
// peer marks that it is about to answer before it does), which the next
// read then takes; bytes the peer had sent before are read with it.
func TestWriteAwaitingAnswerReturnsWithTheAnswer(t *testing.T) {
	for _, early := range []string{"", "early"} {
		ours, theirs := tcpPair(t)
		if early != "" {
			theirs.Write([]byte(early))
			time.Sleep(20 * time.Millisecond) // in our socket before the write
		}
		var answering atomic.Bool
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, 5)
			io.ReadFull(theirs, b)
			got <- b
			time.Sleep(50 * time.Millisecond)
			answering.Store(true)
			theirs.Write([]byte("answer"))
		}()
		ours.SetDeadline(time.Now().Add(5 * time.Second))
		if err := writeAwaitingAnswer(ours, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if !answering.Load() {
			t.Fatalf("early %q: returned before the answer was sent", early)
		}
		if b := <-got; string(b) != "hello" {
			t.Fatalf("peer got %q", b)
		}
		want := early + "answer"
		b := make([]byte, len(want))
		if _, err := io.ReadFull(ours, b); err != nil || string(b) != want {
			t.Fatalf("read %q, %v; want %q", b, err, want)
		}
	}
}

// TestWriteAwaitingAnswerEndsAtTheDeadlineOrAClose: no answer ends the
// wait at the read deadline (the next read reports it); a peer that
// closes ends it at once.
func TestWriteAwaitingAnswerEndsAtTheDeadlineOrAClose(t *testing.T) {
	ours, theirs := tcpPair(t)
	ours.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if err := writeAwaitingAnswer(ours, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := ours.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after an unanswered wait: %v, want the deadline", err)
	}
	theirs.Close()

	ours, theirs = tcpPair(t)
	ours.SetDeadline(time.Now().Add(5 * time.Second))
	go func() {
		io.ReadFull(theirs, make([]byte, 5))
		theirs.Close()
	}()
	if err := writeAwaitingAnswer(ours, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := ours.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want EOF", err)
	}
}

// TestWriteAwaitingAnswerWritesWhatTheSocketCannotTakeAtOnce: a message
// larger than the socket buffers arrives whole and in order.
func TestWriteAwaitingAnswerWritesWhatTheSocketCannotTakeAtOnce(t *testing.T) {
	ours, theirs := tcpPair(t)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(msg))
		io.ReadFull(theirs, b)
		got <- b
		theirs.Write([]byte("k"))
	}()
	ours.SetDeadline(time.Now().Add(10 * time.Second))
	if err := writeAwaitingAnswer(ours, msg); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, msg) {
		t.Fatal("the peer did not get the message whole")
	}
	if _, err := io.ReadFull(ours, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}

// TestWriteAwaitingAnswerWritesToOtherConnectionsAsUsual: a connection
// that is not a plain socket (TLS, a pipe) gets a plain write.
func TestWriteAwaitingAnswerWritesToOtherConnectionsAsUsual(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go writeAwaitingAnswer(a, []byte("hello"))
	got := make([]byte, 5)
	b.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "hello" {
		t.Fatalf("got %q, %v", got, err)
	}
}
