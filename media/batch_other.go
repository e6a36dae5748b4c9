//go:build !linux

package media

import "net/netip"

// Elsewhere than Linux nothing is batched: every packet is its own write.

type sendBatch struct{}

func (sh *shard) batchBuffer(PacketWriter) []byte { return nil }

func (sh *shard) batchPush(*Stream, int, int, netip.AddrPort) error { return nil }

func (sh *shard) flushBatch() {}
