package pgwire

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/config"
)

// A process that drains (SIGTERM) closes its listeners at once, and the
// process that replaces it (reuse_port, or one started once the port is
// free) takes every new connection, the cancel requests for the draining
// sessions among them. It knows none of their keys, so until December
// 2026 no query of a draining session could be canceled: psql's Ctrl-C
// did nothing for up to shutdown_timeout. Now the draining process listens
// on an abstract unix socket named after its first pg_listen address, and
// a process that does not know a key hands the request there. Only
// processes of the same OS user (or root) may talk on it, both ways: a
// local user can neither guess keys there past the cancel guard nor
// receive the keys by taking the name first.

// drainingName is the abstract socket of a draining process serving
// cfg's first pg_listen address; "" when it has none with a fixed port.
// Slot i > 0 is for a process that begins to drain while slot 0's still
// does (an upgrade during an upgrade), up to drainingSlots at once.
func drainingName(cfg *config.Config, slot int) string {
	if len(cfg.Server.PGListen) == 0 || strings.HasSuffix(cfg.Server.PGListen[0], ":0") {
		return ""
	}
	if slot > 0 {
		return fmt.Sprintf("@pgwarden-draining/%s/%d", cfg.Server.PGListen[0], slot)
	}
	return "@pgwarden-draining/" + cfg.Server.PGListen[0]
}

// drainingSlots is how many processes of one address can drain at once
// and still take their cancel requests.
const drainingSlots = 4

// takeDrainingCancels starts the draining process's side: cancel requests
// handed over by its successor go to this process's own backends, never
// further. The listener closes with the server (Close).
func (s *Server) takeDrainingCancels() {
	cfg := s.state.Current().Config
	if drainingName(cfg, 0) == "" || !peerCredsSupported {
		return
	}
	// A slot another draining process holds (an upgrade during an
	// upgrade) is passed by for the next.
	var ln net.Listener
	var err error
	for slot := 0; slot < drainingSlots && ln == nil; slot++ {
		ln, err = net.Listen("unix", drainingName(cfg, slot))
	}
	if ln == nil {
		// Every slot is taken, by draining processes or by a process of
		// another user.
		s.log.Info("draining: cancel requests for these sessions sent to the new process will not reach them", zap.Error(err))
		return
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	s.acceptWG.Add(1)
	go func() {
		defer s.acceptWG.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.connWG.Add(1)
			go func() {
				defer s.connWG.Done()
				defer c.Close()
				if !sameUser(c) {
					return
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				var msg [16]byte
				if _, err := io.ReadFull(c, msg[:]); err != nil ||
					binary.BigEndian.Uint32(msg[0:]) != 16 || binary.BigEndian.Uint32(msg[4:]) != cancelRequestCode {
					return
				}
				s.cancels.forward(binary.BigEndian.Uint32(msg[8:]), msg[12:16])
			}()
		}
	}()
}

// handToDraining gives a CancelRequest whose key this process does not know
// to a draining process of the same address, if there is one (best effort:
// it cannot tell whether the key was right there).
func handToDraining(cfg *config.Config, pid uint32, key []byte) {
	if drainingName(cfg, 0) == "" || len(key) != 4 || !peerCredsSupported {
		return
	}
	// Each draining process passes the request to its own backends only,
	// and a key is one process's at most: every slot gets it. A slot
	// nobody holds refuses the connect at once.
	for slot := 0; slot < drainingSlots; slot++ {
		handToDrainingAt(drainingName(cfg, slot), pid, key)
	}
}

// handToDrainingAt is handToDraining's hand-over to the process at name.
func handToDrainingAt(name string, pid uint32, key []byte) {
	c, err := net.DialTimeout("unix", name, time.Second)
	if err != nil {
		return // none drains there: the usual case, refused at once
	}
	defer c.Close()
	if !sameUser(c) {
		return
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	backend.DeliverCancel(c, pid, key)
}

// sameUser says whether the process at the other end of unix socket c runs
// as this process's user or as root.
func sameUser(c net.Conn) bool {
	uid, err := peerUID(c)
	return err == nil && trustedUID(uid)
}

// trustedUID is this process's user and root; a variable so that a test
// can stand in for another user.
var trustedUID = func(uid uint32) bool { return uid == uint32(os.Geteuid()) || uid == 0 }
