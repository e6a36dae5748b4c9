//go:build !unix

package main

import "time"

func selfUsage() (time.Duration, uint64) { return 0, 0 }

func raiseFileLimit() {}

func fileLimit() uint64 { return 0 }
