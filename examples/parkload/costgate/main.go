// Command costgate compares the park server's cost per packet of hold music
// and per park + retrieve cycle between the working tree and an earlier
// commit (by default HEAD~1), and fails loudly (exit status 1, a line
// starting with REGRESSION) when either got worse by more than -threshold.
// It is run by hand before a change that touches the hot paths, never in CI:
// its figures are CPU time on the machine at hand, which a shared or busy
// machine makes noisy, so each measurement is taken -rounds times per tree,
// the trees taking turns, and the medians are compared.
//
//	go run ./examples/parkload/costgate                 # working tree vs HEAD~1
//	go run ./examples/parkload/costgate -base 652bc0c   # vs a given commit
//
// For each tree it builds examples/parkserver (the base from `git archive`,
// so the repository is not touched), and one parkload from the working tree
// drives both: a hold run (-calls calls parked with music for -hold; the
// server's CPU per parked call-second over 50 packets a second is its CPU
// per packet) and a cycle run (-cycle-rate cycles a second for -duration;
// the server's CPU per cycle). Everything runs on 127.0.0.1 and every
// process it starts is ended by its PID.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "costgate:", err)
		if errors.Is(err, errRegression) {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

var errRegression = errors.New("a cost regressed beyond the threshold")

type options struct {
	base      string
	threshold float64
	rounds    int
	calls     int
	hold      time.Duration
	cycleRate float64
	duration  time.Duration
	sipPort   int
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("costgate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.StringVar(&o.base, "base", "HEAD~1", "the commit to compare the working tree with")
	fs.Float64Var(&o.threshold, "threshold", 0.20, "the largest accepted increase of a median cost, as a fraction")
	fs.IntVar(&o.rounds, "rounds", 3, "measurements per tree of each cost (medians are compared)")
	fs.IntVar(&o.calls, "calls", 1000, "hold run: calls parked with music")
	fs.DurationVar(&o.hold, "hold", 10*time.Second, "hold run: measurement window")
	fs.Float64Var(&o.cycleRate, "cycle-rate", 500, "cycle run: park + retrieve cycles per second")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "cycle run: how long")
	fs.IntVar(&o.sipPort, "sip-port", 5270, "the servers' SIP port on 127.0.0.1 (pprof on this + 1000)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.rounds < 1 || o.threshold <= 0 || o.calls < 1 || o.cycleRate <= 0 {
		return nil, errors.New("-rounds, -threshold, -calls and -cycle-rate must be positive")
	}
	return o, nil
}

// tree is one side of the comparison.
type tree struct {
	name   string // "base 652bc0c" or "working tree"
	server string // its parkserver binary
}

func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	ctx := context.Background()
	root, err := output(ctx, "", "git", "rev-parse", "--show-toplevel")
	if err != nil {
		return err
	}
	rev, err := output(ctx, root, "git", "rev-parse", "--short", o.base)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "costgate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// The base tree from git archive: the repository is left alone.
	baseSrc := filepath.Join(tmp, "base")
	if err := os.Mkdir(baseSrc, 0o755); err != nil {
		return err
	}
	archive := exec.CommandContext(ctx, "git", "archive", rev)
	archive.Dir = root
	tar := exec.CommandContext(ctx, "tar", "-x", "-C", baseSrc)
	if tar.Stdin, err = archive.StdoutPipe(); err != nil {
		return err
	}
	if err := tar.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		return fmt.Errorf("git archive %s: %w", rev, err)
	}
	if err := tar.Wait(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}

	fmt.Fprintf(stdout, "building parkserver at %s and in the working tree, parkload in the working tree\n", rev)
	base := tree{name: "base " + rev, server: filepath.Join(tmp, "parkserver-base")}
	head := tree{name: "working tree", server: filepath.Join(tmp, "parkserver-new")}
	load := filepath.Join(tmp, "parkload")
	for _, b := range []struct{ dir, out, pkg string }{
		{baseSrc, base.server, "./examples/parkserver"},
		{root, head.server, "./examples/parkserver"},
		{root, load, "./examples/parkload"},
	} {
		if _, err := output(ctx, b.dir, "go", "build", "-o", b.out, b.pkg); err != nil {
			return err
		}
	}

	costs := map[string]map[string][]float64{} // tree → cost → values
	for _, t := range []tree{base, head} {
		costs[t.name] = map[string][]float64{}
	}
	for round := range o.rounds {
		order := []tree{base, head}
		if round%2 == 1 {
			order = []tree{head, base} // take turns against drift
		}
		for _, t := range order {
			perPacket, err := measure(ctx, o, t, load, "hold")
			if err != nil {
				return fmt.Errorf("%s, hold run: %w", t.name, err)
			}
			perCycle, err := measure(ctx, o, t, load, "cycle")
			if err != nil {
				return fmt.Errorf("%s, cycle run: %w", t.name, err)
			}
			costs[t.name][costPacket] = append(costs[t.name][costPacket], perPacket)
			costs[t.name][costCycle] = append(costs[t.name][costCycle], perCycle)
			fmt.Fprintf(stdout, "round %d  %-14s  server CPU %.2f µs per packet, %.0f µs per cycle\n", round+1, t.name, perPacket, perCycle)
		}
	}

	report, regressed := verdict(costs[base.name], costs[head.name], base.name, head.name, o.threshold)
	fmt.Fprint(stdout, report)
	if regressed {
		fmt.Fprintf(stdout, "REGRESSION: a cost grew more than %.0f %% against %s\n", 100*o.threshold, rev)
		return errRegression
	}
	fmt.Fprintf(stdout, "ok: no cost grew more than %.0f %% against %s\n", 100*o.threshold, rev)
	return nil
}

// measure starts t's server, runs one parkload run against it and returns
// the server's CPU per packet (hold) or per cycle (cycle), in µs.
func measure(ctx context.Context, o *options, t tree, load, mode string) (float64, error) {
	sip := "127.0.0.1:" + strconv.Itoa(o.sipPort)
	pprof := "127.0.0.1:" + strconv.Itoa(o.sipPort+1000)
	srv := exec.CommandContext(ctx, t.server, "-listen", sip, "-rtp-ports", "20000-31999", "-timeout", "10m",
		"-log-level", "warn", "-pprof", pprof, "-orbits", "701-799,10000-19999", "-trust", "127.0.0.1")
	var srvErr bytes.Buffer
	srv.Stderr = &srvErr
	if err := srv.Start(); err != nil {
		return 0, err
	}
	defer func() {
		_ = srv.Process.Kill() // by its PID
		_ = srv.Wait()
	}()
	time.Sleep(time.Second) // listening

	args := []string{"-target", sip, "-json", "-progress", "0", "-rtp-ports", "40000-59999",
		"-server-pid", strconv.Itoa(srv.Process.Pid), "-server-debug", "http://" + pprof}
	limit := 2 * time.Minute
	if mode == "hold" {
		args = append(args, "-mode", "hold", "-calls", strconv.Itoa(o.calls), "-hold", o.hold.String())
		limit += o.hold + time.Duration(o.calls)*4*time.Millisecond
	} else {
		args = append(args, "-mode", "cycle", "-workers", "50", "-cycle-rate", strconv.FormatFloat(o.cycleRate, 'f', -1, 64),
			"-duration", o.duration.String())
		limit += o.duration
	}
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	out, err := exec.CommandContext(rctx, load, args...).Output()
	if err != nil {
		return 0, fmt.Errorf("parkload: %w (server said: %s)", err, strings.TrimSpace(srvErr.String()))
	}
	var rep struct {
		Failures uint64 `json:"failures"`
		Server   *struct {
			CPUPerCycleUs   float64 `json:"cpu_per_cycle_us"`
			CPUPerCallSecUs float64 `json:"cpu_per_call_s_us"`
		} `json:"server"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return 0, fmt.Errorf("parkload's report: %w", err)
	}
	if rep.Server == nil {
		return 0, errors.New("parkload's report has no server figures")
	}
	if rep.Failures > 0 {
		return 0, fmt.Errorf("%d failed calls: the figures would not be comparable", rep.Failures)
	}
	if mode == "hold" {
		return rep.Server.CPUPerCallSecUs / 50, nil // 50 packets a second per call
	}
	return rep.Server.CPUPerCycleUs, nil
}

// The costs compared, in the order reported.
const (
	costPacket = "µs per packet"
	costCycle  = "µs per cycle"
)

// verdict compares the median of each cost and reports whether one grew by
// more than threshold (a fraction).
func verdict(base, head map[string][]float64, baseName, headName string, threshold float64) (string, bool) {
	var b strings.Builder
	regressed := false
	fmt.Fprintf(&b, "\n%-14s %14s %14s %8s\n", "cost (median)", baseName, headName, "change")
	for _, cost := range []string{costPacket, costCycle} {
		bm, hm := median(base[cost]), median(head[cost])
		change := hm/bm - 1
		mark := ""
		if change > threshold {
			mark = "  <- REGRESSION"
			regressed = true
		}
		fmt.Fprintf(&b, "%-14s %14.2f %14.2f %+7.1f%%%s\n", cost, bm, hm, 100*change, mark)
	}
	return b.String(), regressed
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// output runs a command in dir and returns its trimmed standard output.
func output(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
