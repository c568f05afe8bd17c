package pgwire

// owedAnswers follows a backend's messages after its client left, from
// where the relay stopped reading, until the backend has sent every
// ReadyForQuery it owes: then it is idle, and its slot may go (see
// backend.Pool.Abandon).
type owedAnswers struct {
	sc   msgScanner
	owed int64
	end  bool
	// read counts what the backend sent since its client left; cancel
	// cancels the statement it runs (set by the caller).
	read     int
	cancel   func()
	canceled bool
}

// owedReadBound bounds what pgwarden reads for a client that left. A
// client connected directly that leaves makes PostgreSQL's next writes
// fail, and the statement then ends with the connection; pgwarden, reading
// on, would instead take a result of any size to its end, so that a
// one-line query, pipelined and left, made it read (and PostgreSQL
// produce) gigabytes. Past this bound the statement is canceled, as its
// failed writes would have ended it; past twice the bound the socket is
// closed, and PostgreSQL's next write fails as it would have directly.
const owedReadBound = 256 << 10

// answersOwed is what to wait for from a backend whose client left, given
// the relay's scanner of the backend's stream, the sync points the client
// sent and the ReadyForQuery the backend answered them with. It is nil
// when there is nothing to wait for: the backend answered everything (it
// waits for input, and reads the end of the session at once), it waits
// for COPY data nobody will send, or its stream could not be followed. A
// backend with nothing to wait for is closed at once.
func answersOwed(down *msgScanner, syncs, readies int64, copyIn bool) *owedAnswers {
	owed := syncs - readies
	if owed <= 0 || copyIn || down.bad {
		return nil
	}
	o := &owedAnswers{owed: owed}
	// The message the relay stopped inside goes on where it stopped; its
	// body is not kept.
	o.sc = msgScanner{hdr: down.hdr, hdrN: down.hdrN, left: down.left, typ: down.typ}
	o.sc.onMsg = func(typ byte, _ []byte) {
		switch typ {
		case 'Z':
			o.owed--
			o.end = o.end || o.owed == 0
		case 'G', 'W':
			// CopyInResponse, CopyBothResponse: the backend now waits for
			// data the client will never send.
			o.end = true
		}
	}
	return o
}

// feed follows chunk; true once the backend owes nothing more (or its
// stream can no longer be followed).
func (o *owedAnswers) feed(chunk []byte) bool {
	o.sc.feed(chunk, 0)
	if o.end || o.sc.bad {
		return true
	}
	o.read += len(chunk)
	if o.read > 2*owedReadBound {
		return true
	}
	if o.read > owedReadBound && !o.canceled {
		o.canceled = true
		if o.cancel != nil {
			o.cancel()
		}
	}
	return false
}
