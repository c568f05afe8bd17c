package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgCluster is a throwaway PostgreSQL server started by the tests.
type pgCluster struct {
	bindir  string
	dir     string // owned by the server's OS user
	data    string
	sockDir string
	port    int
	asUser  string // "postgres" when the tests run as root
}

// backendPassword is every test role's password on the backend.
const backendPassword = "backend-Secret-42"

// findPGBin locates the PostgreSQL server binaries: pg_config --bindir
// first, then Debian's /usr/lib/postgresql/<version>/bin, newest first.
func findPGBin() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("PostgreSQL server binaries not found (no initdb via pg_config --bindir or in /usr/lib/postgresql/*/bin); install them with: apt-get install -y postgresql")
}

// Ports for the processes the tests start (pgwarden, PostgreSQL, HAProxy)
// come from below the kernel's ephemeral range. A port the kernel picked
// for a listen on :0 is also one it hands to outgoing connections: between
// closing the probe and the child's bind, one of the tests' own client or
// backend connections could take it as its local port, and the child then
// fails with "address already in use" (seen once in CI). Below the
// ephemeral range only another listener can take a port, and each port is
// handed out once per run.
var (
	portMu      sync.Mutex
	portsIssued = map[int]bool{}
	portRand    = rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
)

// lowestPort is where the range freePort draws from starts.
const lowestPort = 20000

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// canBind reports whether a loopback TCP listener can be opened on port.
func canBind(port int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// freePort finds a free loopback TCP port below the ephemeral range.
func freePort() int { return freePorts(1) }

// freePortPair finds a port p such that p and p+1 are both free.
func freePortPair() int { return freePorts(2) }

// freePorts finds n consecutive free ports and returns the first.
func freePorts(n int) int {
	portMu.Lock()
	defer portMu.Unlock()
	hi := ephemeralLow() - n
	if hi-lowestPort < 1000 {
		// An unusual ephemeral range: fall back to the kernel's choice.
		for i := 0; i < 100; i++ {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				panic(err)
			}
			p := ln.Addr().(*net.TCPAddr).Port
			ln.Close()
			if n == 1 || canBind(p+1) {
				return p
			}
		}
		panic("no free ports")
	}
	for i := 0; i < 1000; i++ {
		p := lowestPort + portRand.IntN(hi-lowestPort)
		ok := true
		for k := 0; k < n && ok; k++ {
			ok = !portsIssued[p+k] && canBind(p+k)
		}
		if ok {
			for k := 0; k < n; k++ {
				portsIssued[p+k] = true
			}
			return p
		}
	}
	panic("no free ports below the ephemeral range")
}

// startCluster runs initdb and starts a server on a free port. As root,
// both run as the postgres OS user, which owns the cluster's folder.
func startCluster(extraConf string) (*pgCluster, error) {
	bindir, err := findPGBin()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "pgwarden-pg-")
	if err != nil {
		return nil, err
	}
	os.Chmod(base, 0o755)
	c := &pgCluster{bindir: bindir, dir: base, data: filepath.Join(base, "data"), sockDir: filepath.Join(base, "sock"), port: freePort()}
	if os.Geteuid() == 0 {
		c.asUser = "postgres"
	}
	for _, d := range []string{c.data, c.sockDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if c.asUser != "" {
			u, err := user.Lookup(c.asUser)
			if err != nil {
				return nil, fmt.Errorf("running as root needs the %q OS user: %v", c.asUser, err)
			}
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	pwfile := filepath.Join(c.data, "..", "pwfile")
	if err := os.WriteFile(pwfile, []byte(backendPassword+"\n"), 0o644); err != nil {
		return nil, err
	}
	if out, err := c.run("initdb", "-D", c.data, "-U", "postgres", "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	os.Remove(pwfile)
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nfsync = off\n"+
		"max_connections = 100\nlogging_collector = off\n%s\n", c.port, c.sockDir, extraConf)
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	f.WriteString(conf)
	f.Close()
	c.stopWhenTestsEnd() // before the server starts: no moment is uncovered
	if err := c.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

// spawns runs process starts on one OS thread that lives as long as the
// test process: Linux sends a child its Pdeathsig when the thread that
// started it ends, and Go may end other threads while tests run.
var spawns = func() chan func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the process
		for f := range ch {
			f()
		}
	}()
	return ch
}()

// startTiedToTests starts cmd so that it is killed when this test process
// ends, however it ends: a panicking test skips every Cleanup, and a
// gateway, HAProxy or a core-burning load would outlive it.
func startTiedToTests(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	done := make(chan error)
	spawns <- func() { done <- cmd.Start() }
	return <-done
}

// stopWhenTestsEnd starts a watcher, in a session of its own, that stops
// the cluster and removes its folder once this test process has ended,
// however it ended. A panicking test ends the process without TestMain's
// cleanup, and pg_ctl's server, in a session of its own too, outlived it.
// After a normal end Destroy has already done both, and the watcher finds
// nothing to do.
func (c *pgCluster) stopWhenTestsEnd() {
	pgCtl := filepath.Join(c.bindir, "pg_ctl")
	if c.asUser != "" {
		pgCtl = "runuser -u " + c.asUser + " -- " + pgCtl
	}
	script := fmt.Sprintf(`while kill -0 %d 2>/dev/null; do sleep 1; done; `+
		`if [ -f '%s/postmaster.pid' ]; then %s -D '%s' -m immediate -w -t 30 stop; fi; rm -rf '%s'`,
		os.Getpid(), c.data, pgCtl, c.data, c.dir)
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err == nil {
		go cmd.Wait() // the watcher outlives this process; its exit status is nobody's concern
	}
}

func (c *pgCluster) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bindir, prog)
	var cmd *exec.Cmd
	if c.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = c.dir
	return cmd.CombinedOutput()
}

// Start starts (or restarts) the server and waits until it accepts.
func (c *pgCluster) Start() error {
	if out, err := c.run("pg_ctl", "-D", c.data, "-l", filepath.Join(c.data, "server.log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.data, "server.log"))
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop stops the server with a fast shutdown.
func (c *pgCluster) Stop() error {
	out, err := c.run("pg_ctl", "-D", c.data, "-w", "-t", "60", "-m", "fast", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// Destroy stops the server and removes its files.
func (c *pgCluster) Destroy() {
	c.Stop()
	os.RemoveAll(c.dir)
}

// Exec runs SQL as the superuser over the unix socket.
func (c *pgCluster) Exec(sql string) error { return c.ExecIn("postgres", sql) }

// ExecIn runs sql as the superuser in database db.
func (c *pgCluster) ExecIn(db, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", c.sockDir, c.port, db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}
