//go:build !purego

// Derived from Go's crypto/internal/fips140/aes/aes_amd64.s:
// Copyright The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style license that can be
// found in the LICENSE-GO file beside it.

#include "textflag.h"

// One step of the AES-128 key schedule, as crypto/aes does it
// (crypto/internal/fips140/aes/aes_amd64.s, _expand_key_128): X0 holds the
// previous round key and becomes the next, which is stored at (BX); X4
// starts at zero and is scratch.
#define EXPAND_128(rcon) \
	AESKEYGENASSIST $rcon, X0, X1; \
	PSHUFD $0xff, X1, X1; \
	SHUFPS $0x10, X0, X4; \
	PXOR X4, X0; \
	SHUFPS $0x8c, X0, X4; \
	PXOR X4, X0; \
	PXOR X1, X0; \
	MOVUPS X0, (BX); \
	ADDQ $0x10, BX

// func aes128ExpandKey(key *byte, rk *aes128Keys)
TEXT ·aes128ExpandKey(SB), NOSPLIT, $0-16
	MOVQ key+0(FP), AX
	MOVQ rk+8(FP), BX
	MOVUPS (AX), X0
	MOVUPS X0, (BX)
	ADDQ $0x10, BX
	PXOR X4, X4
	EXPAND_128(0x01)
	EXPAND_128(0x02)
	EXPAND_128(0x04)
	EXPAND_128(0x08)
	EXPAND_128(0x10)
	EXPAND_128(0x20)
	EXPAND_128(0x40)
	EXPAND_128(0x80)
	EXPAND_128(0x1b)
	EXPAND_128(0x36)
	RET

#define ROUND(k) \
	AESENC k, X0; \
	AESENC k, X1; \
	AESENC k, X2; \
	AESENC k, X3

// func aes128EncryptBlocks(rk *aes128Keys, dst, src *byte, n int)
// The round keys stay in X5-X15; four blocks go through the rounds
// together in X0-X3.
TEXT ·aes128EncryptBlocks(SB), NOSPLIT, $0-32
	MOVQ rk+0(FP), AX
	MOVQ dst+8(FP), DX
	MOVQ src+16(FP), BX
	MOVQ n+24(FP), CX
	MOVUPS 0(AX), X5
	MOVUPS 16(AX), X6
	MOVUPS 32(AX), X7
	MOVUPS 48(AX), X8
	MOVUPS 64(AX), X9
	MOVUPS 80(AX), X10
	MOVUPS 96(AX), X11
	MOVUPS 112(AX), X12
	MOVUPS 128(AX), X13
	MOVUPS 144(AX), X14
	MOVUPS 160(AX), X15

loop:
	CMPQ CX, $4
	JB done
	MOVUPS 0(BX), X0
	MOVUPS 16(BX), X1
	MOVUPS 32(BX), X2
	MOVUPS 48(BX), X3
	PXOR X5, X0
	PXOR X5, X1
	PXOR X5, X2
	PXOR X5, X3
	ROUND(X6)
	ROUND(X7)
	ROUND(X8)
	ROUND(X9)
	ROUND(X10)
	ROUND(X11)
	ROUND(X12)
	ROUND(X13)
	ROUND(X14)
	AESENCLAST X15, X0
	AESENCLAST X15, X1
	AESENCLAST X15, X2
	AESENCLAST X15, X3
	MOVUPS X0, 0(DX)
	MOVUPS X1, 16(DX)
	MOVUPS X2, 32(DX)
	MOVUPS X3, 48(DX)
	ADDQ $64, BX
	ADDQ $64, DX
	SUBQ $4, CX
	JMP loop

done:
	RET
