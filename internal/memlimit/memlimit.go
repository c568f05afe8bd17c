// Package memlimit gives Go's garbage collector the memory limit of the
// control group pgwarden runs in (a container's, a systemd unit's
// MemoryMax), when GOMEMLIMIT does not set one.
//
// pgwarden bounds what requests hold (http.max_request_memory), but Go
// collects freed memory only once the heap has grown by GOGC (100%) since
// the last collection, so the process can reach about twice what is live.
// Near a control group's limit that garbage is what gets the process
// killed, and every client's session with it. With a soft limit the
// collector runs sooner as the heap nears it instead.
package memlimit

import (
	"bufio"
	"io/fs"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// Share is the part of the control group's limit given to Go: the rest
// is for what Go does not count (thread stacks of the kernel, cgo, page
// tables) and for the socket buffers the control group charges too.
const Share = 0.9

// unlimited: cgroup v1 writes "no limit" as a number just under 2^63.
const unlimited = 1 << 62

// FromCgroup reads the memory limit of the control group of this process
// in fsys (the root file system: /proc and /sys/fs/cgroup): the least of
// memory.max (v2) or memory.limit_in_bytes (v1) of its group and the
// groups above it. 0 when there is none.
func FromCgroup(fsys fs.FS) int64 {
	f, err := fsys.Open("proc/self/cgroup")
	if err != nil {
		return 0
	}
	defer f.Close()
	var limit int64
	take := func(v int64) {
		if v > 0 && v < unlimited && (limit == 0 || v < limit) {
			limit = v
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			// cgroup v2, mounted at /sys/fs/cgroup, or at
			// /sys/fs/cgroup/unified beside v1 controllers.
			for _, root := range []string{"sys/fs/cgroup", "sys/fs/cgroup/unified"} {
				walkUp(fsys, root, parts[2], "memory.max", take)
			}
		case hasController(parts[1], "memory"):
			walkUp(fsys, "sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes", take)
		}
	}
	return limit
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// walkUp reads file in the group at root/group and in each group above it
// up to root, passing each number found to take ("max" is no limit).
func walkUp(fsys fs.FS, root, group, file string, take func(int64)) {
	g := path.Clean("/" + group)
	for {
		b, err := fs.ReadFile(fsys, path.Join(root, g, file))
		if err == nil {
			if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
				take(v)
			}
		}
		if g == "/" {
			return
		}
		g = path.Dir(g)
	}
}

// Apply sets Go's soft memory limit to Share of the control group's limit,
// unless GOMEMLIMIT is set or no limit is found. It returns the limit it
// set (0 for none) and the control group's.
func Apply() (set, group int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, 0
	}
	group = FromCgroup(os.DirFS("/"))
	if group == 0 {
		return 0, 0
	}
	set = int64(float64(group) * Share)
	debug.SetMemoryLimit(set)
	return set, group
}
