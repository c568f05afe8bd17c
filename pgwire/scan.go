package pgwire

import (
	"encoding/binary"
)

// maxCapturedBody bounds what the scanner keeps of a message it looks
// into (ParameterStatus, ReadyForQuery): those are small, anything larger
// is not kept.
const maxCapturedBody = 8 << 10

// msgScanner follows message boundaries in a relayed byte stream without
// holding the stream: it sees each chunk as it passes and keeps only the
// current header and the bodies of the message types it was asked for.
type msgScanner struct {
	hdr     [5]byte
	hdrN    int
	left    int
	typ     byte
	keep    bool
	body    []byte
	bad     bool // a length field made no sense: the stream cannot be followed
	capture func(typ byte) bool
	onMsg   func(typ byte, body []byte)
	// stream, when set, picks message types whose bodies are handed to
	// onStart and onPart piece by piece as they pass, however large.
	stream  func(typ byte) bool
	onStart func()
	onPart  func(part []byte)
	streams bool // the current message's body goes to onPart
}

// atBoundary reports whether the bytes seen so far end exactly at the end
// of a message.
func (s *msgScanner) atBoundary() bool { return !s.bad && s.hdrN == 0 && s.left == 0 }

// feed scans b. It returns the offset at which a message of type stop
// begins in b (its header wholly in b), or -1; scanning ends there.
func (s *msgScanner) feed(b []byte, stop byte) int {
	off := 0
	for off < len(b) && !s.bad {
		if s.left == 0 && s.hdrN < 5 {
			start := off
			n := copy(s.hdr[s.hdrN:], b[off:])
			s.hdrN += n
			off += n
			if s.hdrN < 5 {
				return -1
			}
			s.typ = s.hdr[0]
			if stop != 0 && s.typ == stop && start+5 == off && s.hdrN == 5 && n == 5 {
				s.hdrN = 0
				return start
			}
			l := int(binary.BigEndian.Uint32(s.hdr[1:])) - 4
			if l < 0 {
				s.bad = true
				return -1
			}
			s.left = l
			s.keep = s.capture != nil && s.capture(s.typ) && l <= maxCapturedBody
			s.streams = s.stream != nil && s.stream(s.typ)
			if s.streams {
				s.onStart()
			}
			s.body = s.body[:0]
			if l == 0 {
				s.done()
			}
			continue
		}
		n := len(b) - off
		if n > s.left {
			n = s.left
		}
		if s.keep {
			s.body = append(s.body, b[off:off+n]...)
		}
		if s.streams {
			s.onPart(b[off : off+n])
		}
		s.left -= n
		off += n
		if s.left == 0 {
			s.done()
		}
	}
	return -1
}

func (s *msgScanner) done() {
	s.hdrN = 0
	if s.onMsg != nil {
		s.onMsg(s.typ, s.body)
	}
}
