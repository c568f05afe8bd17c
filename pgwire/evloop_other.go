//go:build !linux

package pgwire

import (
	"errors"
	"net"

	"github.com/pgwarden/pgwarden/backend"
	"github.com/pgwarden/pgwarden/internal/awake"
)

// Event loops need epoll; elsewhere sessions are relayed by goroutines.

type evLoops struct{}

func newEvLoops(int, *awake.Keeper) (*evLoops, error) {
	return nil, errors.New("event loops need Linux")
}

func (*evLoops) pick() *evLoop { return nil }
func (*evLoops) close()        {}

type evLoop struct{}

func (*evLoop) add(*evSession, []byte) {}

type evResult struct {
	reusable  bool
	backendFD int
	keptState bool
	owe       *owedAnswers
}

type evSession struct {
	lp       *evLoop
	cfd, bfd int
	params   map[string]string
	session  *backend.Session
	metrics  any
	watch    sqlWatch
	onEnd    func(evResult)
}

func (*evSession) kill()      {}
func (*evSession) terminate() {}

func canLoop(net.Conn) bool          { return false }
func detachFD(net.Conn) (int, error) { return -1, errors.New("event loops need Linux") }
func attachFD(int) (net.Conn, error) { return nil, errors.New("event loops need Linux") }
