package parkflags

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// RegisterConfig defines -config on fs.
func RegisterConfig(fs *flag.FlagSet) *string {
	return fs.String("config", "", "read settings from this `file`: one flag per line, without its dash (timeout 120s, orbits = 701-799), # for comments; a flag on the command line wins; SIGHUP or POST /api/reload re-reads orbits, timeout, attempts, recall-ring, fallback and moh")
}

// Reloadable are the settings a reload applies while calls are parked;
// a change to any other needs a restart.
var Reloadable = []string{"orbits", "timeout", "attempts", "recall-ring", "fallback", "moh"}

// ConfigFile is -config: the program's flags, read from a file under
// those given on the command line.
type ConfigFile struct {
	path     string
	fs       *flag.FlagSet
	explicit map[string]string // the command line's: they win over the file
}

// LoadConfig reads path into fs, once fs has parsed the command line:
// each setting whose flag the command line did not set. An unknown name,
// a bad value or an unreadable file is an error naming the file and line.
func LoadConfig(fs *flag.FlagSet, path string) (*ConfigFile, error) {
	c := &ConfigFile{path: path, fs: fs, explicit: map[string]string{}}
	fs.Visit(func(f *flag.Flag) { c.explicit[f.Name] = f.Value.String() })
	values, err := c.read()
	if err != nil {
		return nil, err
	}
	for _, kv := range values {
		if _, set := c.explicit[kv.name]; set {
			continue
		}
		if err := fs.Set(kv.name, kv.value); err != nil {
			return nil, fmt.Errorf("-config %s:%d: %s: %v", path, kv.line, kv.name, err)
		}
	}
	return c, nil
}

type setting struct {
	name, value string
	line        int
}

// read parses the file: "name value" or "name = value" per line.
func (c *ConfigFile) read() ([]setting, error) {
	f, err := os.Open(c.path)
	if err != nil {
		return nil, fmt.Errorf("-config: %w", err)
	}
	defer f.Close()
	var out []setting
	seen := map[string]int{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, _ := strings.Cut(line, " ")
		name, value = strings.TrimSpace(strings.TrimSuffix(name, "=")), strings.TrimSpace(value)
		if n, v, ok := strings.Cut(name, "="); ok { // name=value
			name, value = n, v
		}
		value = strings.TrimSpace(strings.TrimPrefix(value, "="))
		name = strings.TrimPrefix(name, "-")
		switch {
		case name == "config" || name == "check":
			return nil, fmt.Errorf("-config %s:%d: %s is for the command line only", c.path, n, name)
		case c.fs.Lookup(name) == nil:
			return nil, fmt.Errorf("-config %s:%d: no setting %q (the settings are the flags, without the dash)", c.path, n, name)
		case seen[name] != 0:
			return nil, fmt.Errorf("-config %s:%d: %s is set again (first on line %d)", c.path, n, name, seen[name])
		}
		seen[name] = n
		out = append(out, setting{name: name, value: value, line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("-config %s: %w", c.path, err)
	}
	return out, nil
}

// Reloader re-reads -config while the program runs (SIGHUP, POST
// /api/reload) and applies what may change with calls parked: the one
// flow both programs use.
type Reloader struct {
	file   *ConfigFile
	listen string
	log    *slog.Logger
	apply  func(Settings) error
	tls    TLSSettings

	mu      sync.Mutex // one reload at a time
	current map[string]string
}

// Reload is what a reload did.
type Reload struct {
	File string `json:"file,omitempty"`
	// Changed are the reloadable settings that took a new value.
	Changed []string `json:"changed"`
	// Restart are settings the file changes that apply only at the next
	// start (listen, rtp-ports, redis, ...): they were left as they run.
	Restart []string `json:"restart_needed"`
}

// NewReloader returns the reload of file (nil: no -config, and a reload
// only says so); apply puts checked settings into effect
// (sipadapter's Reconfigure). listen is -listen's value, for Resolve.
func NewReloader(file *ConfigFile, listen string, logger *slog.Logger, apply func(Settings) error) *Reloader {
	r := &Reloader{file: file, listen: listen, log: logger, apply: apply, current: map[string]string{}}
	if file != nil {
		file.fs.VisitAll(func(f *flag.Flag) { r.current[f.Name] = f.Value.String() })
	}
	return r
}

// ErrNoConfigFile: a reload of a program started without -config or TLS.
var ErrNoConfigFile = errors.New("started without -config or -tls-listen: there is nothing to reload")

// Certificates has each reload read -tls-cert and -tls-key again too.
func (r *Reloader) Certificates(s TLSSettings) { r.tls = s }

// Reload reads the file again and applies the reloadable settings. On any
// error the running configuration stays, and the error says why; either
// way it is logged in one line.
func (r *Reloader) Reload(context.Context) (Reload, error) {
	res, err := r.reload()
	if err != nil {
		r.log.Error("reload refused; the running configuration stays", "err", err)
		return res, err
	}
	r.log.Info("configuration reloaded", "file", res.File, "changed", res.Changed, "restart_needed", res.Restart)
	return res, nil
}

func (r *Reloader) reload() (Reload, error) {
	if r.file == nil && !r.tls.Enabled() {
		return Reload{}, ErrNoConfigFile
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Reload{Changed: []string{}, Restart: []string{}}
	// The certificate is read first and put in place last, so that a bad
	// file or a bad pair changes nothing.
	pair, err := r.tls.readPair()
	if err != nil {
		return res, err
	}
	if r.file == nil {
		if r.tls.usePair(pair) {
			res.Changed = append(res.Changed, "tls-cert")
		}
		return res, nil
	}
	res.File = r.file.path
	values, err := r.file.read()
	if err != nil {
		return res, err
	}
	// The park's flags afresh: defaults, then the file, then the
	// command line, as at start.
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(discard{})
	pf := Register(fs)
	next := map[string]string{}
	for _, kv := range values {
		next[kv.name] = kv.value
	}
	for name, v := range r.file.explicit {
		next[name] = v
	}
	for _, kv := range values {
		v := next[kv.name]
		if fs.Lookup(kv.name) != nil {
			if err := fs.Set(kv.name, v); err != nil {
				return res, fmt.Errorf("-config %s:%d: %s: %v", r.file.path, kv.line, kv.name, err)
			}
		}
	}
	for name, v := range r.file.explicit {
		if fs.Lookup(name) != nil {
			_ = fs.Set(name, v) // parsed once already
		}
	}
	set, err := pf.Resolve(r.listen, r.log)
	if err != nil {
		return res, fmt.Errorf("-config %s: %w", r.file.path, err)
	}
	// What differs from what runs: a flag named in the file, or one the
	// file no longer names (back to its default).
	now := map[string]string{}
	r.file.fs.VisitAll(func(f *flag.Flag) {
		v, inFile := next[f.Name]
		if !inFile {
			v = f.DefValue
		}
		now[f.Name] = v
	})
	for name, v := range now {
		if v == r.current[name] || name == "config" {
			continue
		}
		if slices.Contains(Reloadable, name) {
			res.Changed = append(res.Changed, name)
		} else {
			res.Restart = append(res.Restart, name)
		}
	}
	slices.Sort(res.Changed)
	slices.Sort(res.Restart)
	if err := r.apply(set); err != nil {
		return res, fmt.Errorf("-config %s: %w", r.file.path, err)
	}
	for _, name := range res.Changed {
		r.current[name] = now[name]
	}
	if r.tls.usePair(pair) {
		res.Changed = append(res.Changed, "tls-cert")
	}
	return res, nil
}

// OnHangup reloads at each SIGHUP until stop is called. Without -config a
// SIGHUP is logged and ignored (never the default, which ends the process).
func (r *Reloader) OnHangup() (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-c:
				_, _ = r.Reload(context.Background())
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(c)
			close(done)
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Handler is the reload for POST /api/reload: nil without -config or
// TLS, so the API answers 404.
func (r *Reloader) Handler() func(ctx context.Context) (any, error) {
	if r.file == nil && !r.tls.Enabled() {
		return nil
	}
	return func(ctx context.Context) (any, error) { return r.Reload(ctx) }
}
