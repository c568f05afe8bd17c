package memlimit

import (
	"testing"
	"testing/fstest"
)

// The limit is the least of the process's group and the groups above it,
// in either cgroup version; "max" and v1's near-2^63 are no limit.
func TestTheLimitIsTheLeastOfTheGroupAndItsParents(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, c := range []struct {
		name string
		fs   fstest.MapFS
		want int64
	}{
		{"v2, the group's own", fstest.MapFS{
			"proc/self/cgroup": file("0::/system.slice/pgwarden.service\n"),
			"sys/fs/cgroup/system.slice/pgwarden.service/memory.max": file("536870912\n"),
			"sys/fs/cgroup/system.slice/memory.max":                  file("max\n"),
		}, 512 << 20},
		{"v2, a parent's lower", fstest.MapFS{
			"proc/self/cgroup":                          file("0::/kubepods/pod1/c1\n"),
			"sys/fs/cgroup/kubepods/pod1/c1/memory.max": file("max\n"),
			"sys/fs/cgroup/kubepods/pod1/memory.max":    file("268435456\n"),
			"sys/fs/cgroup/kubepods/memory.max":         file("1073741824\n"),
		}, 256 << 20},
		{"v2 in a container's namespace", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("134217728\n"),
		}, 128 << 20},
		{"v1", fstest.MapFS{
			"proc/self/cgroup": file("12:pids:/\n4:memory:/docker/abc\n1:name=systemd:/\n0::/\n"),
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": file("1073741824\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":            file("9223372036854771712\n"),
		}, 1 << 30},
		{"v1 without a limit", fstest.MapFS{
			"proc/self/cgroup": file("4:memory:/process_api/x\n"),
			"sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes": file("9223372036854771712\n"),
		}, 0},
		{"no cgroup file", fstest.MapFS{}, 0},
	} {
		if got := FromCgroup(c.fs); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}
