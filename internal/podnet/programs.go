package podnet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// Offsets of the fields of struct bpf_sock_addr (include/uapi/linux/bpf.h),
// the context of cgroup sock_addr programs. Addresses and ports are in
// network byte order, so a 4-byte load of them yields the bytes as the
// machine's native order reads them; the constants below are made the same way.
const (
	offUserIP4  = 4
	offUserIP6  = 8 // four 32-bit words
	offUserPort = 24
	offProtocol = 36
	offSk       = 64 // struct bpf_sock *

	ipprotoTCP = 6
	ipprotoUDP = 17
)

// word is 4 bytes of an address as a native-order load of them reads them.
func word(b []byte) int32 { return int32(binary.NativeEndian.Uint32(b)) }

var (
	loopback4   = word([]byte{127, 0, 0, 1})
	v6One       = word([]byte{0, 0, 0, 1})       // last word of ::1
	v4MappedTag = word([]byte{0, 0, 0xff, 0xff}) // third word of ::ffff:a.b.c.d
)

// spec is one program: where it attaches and what it does.
type spec struct {
	attach ebpf.AttachType
	insns  asm.Instructions
}

// programs are the sock_addr programs of a pod whose address is ip. Every
// program allows the call (returns 1); they only rewrite addresses.
//
//   - bind4/bind6: a bind to every address (0.0.0.0, ::) or to loopback
//     (127.0.0.1, ::1) on a given port binds the pod's IP instead (for IPv6 as
//     the v4-mapped ::ffff:<pod IP>, which a dual-stack socket accepts IPv4
//     connections on). A bind to port 0 is left alone: that is a client
//     choosing an ephemeral source port, whose traffic may leave the machine.
//   - connect4/connect6, sendmsg4/sendmsg6: a connection (or datagram) to
//     127.0.0.1:P or ::1:P goes to the pod's IP when the pod has a socket
//     there (its server bound every address and was moved there), else it
//     stays on 127.0.0.1, where the apiserver and other host services are.
//   - recvmsg4/recvmsg6: a datagram answered from the pod's IP after
//     sendmsg moved it shows 127.0.0.1 (::1 for IPv6) as its source, the
//     address the sender used, so clients that check who answered (DNS
//     resolvers do) accept it.
func programs(ip netip.Addr) ([]spec, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("pod IP %s: only IPv4 pod addresses are supported", ip)
	}
	b := ip.As4()
	pod := word(b[:])
	return []spec{
		{ebpf.AttachCGroupInet4Bind, bind4(pod)},
		{ebpf.AttachCGroupInet6Bind, bind6(pod)},
		{ebpf.AttachCGroupInet4Connect, toPod4(pod, 0)},
		{ebpf.AttachCGroupUDP4Sendmsg, toPod4(pod, ipprotoUDP)},
		{ebpf.AttachCGroupInet6Connect, toPod6(pod, 0)},
		{ebpf.AttachCGroupUDP6Sendmsg, toPod6(pod, ipprotoUDP)},
		{ebpf.AttachCGroupUDP4Recvmsg, fromPod4(pod)},
		{ebpf.AttachCGroupUDP6Recvmsg, fromPod6(pod)},
	}, nil
}

// allow ends a program: the call goes on with whatever address it now has.
func allow() asm.Instructions {
	return asm.Instructions{asm.Mov.Imm(asm.R0, 1).WithSymbol("allow"), asm.Return()}
}

func bind4(pod int32) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, offUserPort, asm.Word),
		asm.JEq.Imm32(asm.R2, 0, "allow"),
		asm.LoadMem(asm.R2, asm.R6, offUserIP4, asm.Word),
		asm.JEq.Imm32(asm.R2, 0, "rewrite"),
		asm.JNE.Imm32(asm.R2, loopback4, "allow"),
		asm.Mov.Imm32(asm.R2, pod).WithSymbol("rewrite"),
		asm.StoreMem(asm.R6, offUserIP4, asm.R2, asm.Word),
	}
	return append(insns, allow()...)
}

// v6only is where struct sock_common keeps skc_ipv6only in the running
// kernel, a bit field whose place only the kernel's BTF tells.
var v6onlyField = sync.OnceValue(func() (f struct {
	ok   bool
	byte int16
	mask int32
}) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return f
	}
	var sc *btf.Struct
	if err := spec.TypeByName("sock_common", &sc); err != nil {
		return f
	}
	for _, m := range sc.Members {
		if m.Name == "skc_ipv6only" && m.BitfieldSize == 1 {
			// Bit fields fill bytes from their lowest bit on little-endian
			// machines, from the highest on big-endian ones.
			bit := int(m.Offset % 8)
			if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
				bit = 7 - bit
			}
			f.ok, f.byte, f.mask = true, int16(m.Offset/8), 1<<bit
		}
	}
	return f
})

func bind6(pod int32) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, offUserPort, asm.Word),
		asm.JEq.Imm32(asm.R2, 0, "allow"),
	}
	// :: and ::1 share their first three words (zero) and differ in the last.
	for i := int16(0); i < 3; i++ {
		insns = append(insns,
			asm.LoadMem(asm.R2, asm.R6, offUserIP6+4*i, asm.Word),
			asm.JNE.Imm32(asm.R2, 0, "allow"))
	}
	insns = append(insns,
		asm.LoadMem(asm.R2, asm.R6, offUserIP6+12, asm.Word),
		asm.JEq.Imm32(asm.R2, 0, "v6only"),
		asm.JNE.Imm32(asm.R2, v6One, "allow"),
	)
	// An IPV6_V6ONLY socket cannot bind an IPv4 address: it keeps its IPv6
	// one, as in a network namespace of its own. bpf_getsockopt does not
	// answer IPV6_V6ONLY, so the program reads the socket's flag itself, at
	// the place the kernel's BTF gives (without BTF, every socket is taken
	// for dual-stack).
	if v6only := v6onlyField(); v6only.ok {
		insns = append(insns,
			asm.LoadMem(asm.R1, asm.R6, offSk, asm.DWord).WithSymbol("v6only"),
			asm.FnSkcToTcp6Sock.Call(),
			asm.JNE.Imm(asm.R0, 0, "flag"),
			asm.LoadMem(asm.R1, asm.R6, offSk, asm.DWord),
			asm.FnSkcToUdp6Sock.Call(),
			asm.JEq.Imm(asm.R0, 0, "rewrite"),
			asm.LoadMem(asm.R2, asm.R0, v6only.byte, asm.Byte).WithSymbol("flag"),
			asm.And.Imm(asm.R2, v6only.mask),
			asm.JNE.Imm(asm.R2, 0, "allow"),
		)
	} else {
		insns = append(insns, asm.Ja.Label("rewrite").WithSymbol("v6only"))
	}
	insns = append(insns, setMapped6(pod, "rewrite")...)
	return append(insns, allow()...)
}

// setMapped6 writes ::ffff:<pod> into the context's IPv6 address (its first
// two words are zero already for the addresses the programs rewrite).
func setMapped6(pod int32, label string) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Imm32(asm.R2, v4MappedTag).WithSymbol(label),
		asm.StoreMem(asm.R6, offUserIP6+8, asm.R2, asm.Word),
		asm.Mov.Imm32(asm.R2, pod),
		asm.StoreMem(asm.R6, offUserIP6+12, asm.R2, asm.Word),
	}
}

// lookupPod jumps to found when a socket of the protocol the context's
// protocol field names (TCP or UDP; only is that protocol when not 0) is bound
// to <pod>:<the context's port>, to "allow" otherwise. R6 holds the context.
func lookupPod(pod int32, only int32, found string) asm.Instructions {
	// struct bpf_sock_tuple.ipv4 on the stack: saddr, daddr, sport, dport.
	// A zero source matches listening (and unconnected UDP) sockets only.
	insns := asm.Instructions{
		asm.StoreImm(asm.RFP, -16, 0, asm.Word),
		asm.Mov.Imm32(asm.R2, pod),
		asm.StoreMem(asm.RFP, -12, asm.R2, asm.Word),
		asm.StoreImm(asm.RFP, -8, 0, asm.Half),
		asm.LoadMem(asm.R2, asm.R6, offUserPort, asm.Word),
		asm.StoreMem(asm.RFP, -6, asm.R2, asm.Half),
	}
	if only == 0 {
		insns = append(insns,
			asm.LoadMem(asm.R2, asm.R6, offProtocol, asm.Word),
			asm.JEq.Imm32(asm.R2, ipprotoUDP, "udp"),
			asm.JNE.Imm32(asm.R2, ipprotoTCP, "allow"))
	}
	call := func(fn asm.BuiltinFunc, label string) asm.Instructions {
		return asm.Instructions{
			asm.Mov.Reg(asm.R1, asm.R6).WithSymbol(label),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -16),
			asm.Mov.Imm(asm.R3, 12),
			// BPF_F_CURRENT_NETNS: the caller's network namespace.
			asm.Mov.Imm(asm.R4, -1),
			asm.Mov.Imm(asm.R5, 0),
			fn.Call(),
			asm.JEq.Imm(asm.R0, 0, "allow"),
			// The lookup holds a reference the verifier insists is dropped.
			asm.Mov.Reg(asm.R1, asm.R0),
			asm.FnSkRelease.Call(),
		}
	}
	switch only {
	case ipprotoUDP:
		insns = append(insns, call(asm.FnSkLookupUdp, "lookup")...)
	default:
		insns = append(insns, call(asm.FnSkLookupTcp, "lookup")...)
		insns = append(insns, asm.Ja.Label(found))
		insns = append(insns, call(asm.FnSkLookupUdp, "udp")...)
	}
	return append(insns, asm.Ja.Label(found))
}

func toPod4(pod int32, only int32) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, offUserIP4, asm.Word),
		asm.JNE.Imm32(asm.R2, loopback4, "allow"),
	}
	insns = append(insns, lookupPod(pod, only, "rewrite")...)
	insns = append(insns,
		asm.Mov.Imm32(asm.R2, pod).WithSymbol("rewrite"),
		asm.StoreMem(asm.R6, offUserIP4, asm.R2, asm.Word),
		asm.Ja.Label("allow"),
	)
	return append(insns, allow()...)
}

// toPod6 moves ::1 and ::ffff:127.0.0.1 to ::ffff:<pod>, which reaches the
// pod's IPv4 (or dual-stack) socket.
func toPod6(pod int32, only int32) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, offUserIP6, asm.Word),
		asm.JNE.Imm32(asm.R2, 0, "allow"),
		asm.LoadMem(asm.R2, asm.R6, offUserIP6+4, asm.Word),
		asm.JNE.Imm32(asm.R2, 0, "allow"),
		asm.LoadMem(asm.R2, asm.R6, offUserIP6+8, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, offUserIP6+12, asm.Word),
		asm.JEq.Imm32(asm.R2, v4MappedTag, "mapped"),
		asm.JNE.Imm32(asm.R2, 0, "allow"),
		asm.JEq.Imm32(asm.R3, v6One, "match"),
		asm.Ja.Label("allow"),
		asm.JNE.Imm32(asm.R3, loopback4, "allow").WithSymbol("mapped"),
	}
	insns = append(insns, asm.Ja.Label("match"))
	lookup := lookupPod(pod, only, "rewrite")
	lookup[0] = lookup[0].WithSymbol("match")
	insns = append(insns, lookup...)
	insns = append(insns, setMapped6(pod, "rewrite")...)
	insns = append(insns, asm.Ja.Label("allow"))
	return append(insns, allow()...)
}

// fromPod4 shows a datagram from <pod> as coming from 127.0.0.1 (the port is
// the same): see programs.
func fromPod4(pod int32) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, offUserIP4, asm.Word),
		asm.JNE.Imm32(asm.R2, pod, "allow"),
		asm.Mov.Imm32(asm.R2, loopback4),
		asm.StoreMem(asm.R6, offUserIP4, asm.R2, asm.Word),
	}
	return append(insns, allow()...)
}

// fromPod6 shows a datagram from ::ffff:<pod> as coming from ::1.
func fromPod6(pod int32) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, offUserIP6, asm.Word),
		asm.JNE.Imm32(asm.R2, 0, "allow"),
		asm.LoadMem(asm.R2, asm.R6, offUserIP6+4, asm.Word),
		asm.JNE.Imm32(asm.R2, 0, "allow"),
		asm.LoadMem(asm.R2, asm.R6, offUserIP6+8, asm.Word),
		asm.JNE.Imm32(asm.R2, v4MappedTag, "allow"),
		asm.LoadMem(asm.R2, asm.R6, offUserIP6+12, asm.Word),
		asm.JNE.Imm32(asm.R2, pod, "allow"),
		asm.Mov.Imm32(asm.R2, 0),
		asm.StoreMem(asm.R6, offUserIP6+8, asm.R2, asm.Word),
		asm.Mov.Imm32(asm.R2, v6One),
		asm.StoreMem(asm.R6, offUserIP6+12, asm.R2, asm.Word),
	}
	return append(insns, allow()...)
}
