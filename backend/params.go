package backend

import (
	"maps"
	"sort"
	"strings"
	"sync"
)

// Most backends of one server report the same ParameterStatus values, and
// a map of them costs about a kilobyte; sessions that are idle for hours
// share one read-only copy instead. The table is bounded: clients choose
// some of the values (application_name, DateStyle...), and beyond the
// bound a session simply keeps its own map.
const maxSharedParams = 256

var sharedParams struct {
	sync.Mutex
	m map[string]map[string]string
}

// ShareParams replaces Params with an equal map that other sessions may
// hold too. Params must then change only through SetParam.
func (s *Session) ShareParams() {
	if s.paramsShared || len(s.Params) == 0 {
		return
	}
	kv := make([]string, 0, 2*len(s.Params))
	for k, v := range s.Params {
		kv = append(kv, k+"\x00"+v)
	}
	sort.Strings(kv)
	key := strings.Join(kv, "\x00\x00")
	sharedParams.Lock()
	defer sharedParams.Unlock()
	if m, ok := sharedParams.m[key]; ok {
		s.Params, s.paramsShared = m, true
		return
	}
	if len(sharedParams.m) >= maxSharedParams {
		return
	}
	if sharedParams.m == nil {
		sharedParams.m = make(map[string]map[string]string)
	}
	m := maps.Clone(s.Params)
	sharedParams.m[key] = m
	s.Params, s.paramsShared = m, true
}

// SetParam records a ParameterStatus the backend sent.
func (s *Session) SetParam(name, value string) {
	if v, ok := s.Params[name]; ok && v == value {
		return
	}
	if s.paramsShared || s.Params == nil {
		s.Params = maps.Clone(s.Params)
		if s.Params == nil {
			s.Params = make(map[string]string)
		}
		s.paramsShared = false
	}
	s.Params[name] = value
}
