package node

import (
	"encoding/binary"
	"fmt"
	"net"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// ipPool hands out pod IPs from the node's loopback pod CIDR. Linux routes all
// of 127.0.0.0/8 to lo, so an address needs no interface setup: a process can
// bind it at once, and two pods can listen on the same port.
type ipPool struct {
	mu    sync.Mutex
	first uint32
	size  uint32
	next  uint32
	used  map[uint32]types.UID
}

func newIPPool(cidr string) (*ipPool, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, err
	}
	ones, bits := n.Mask.Size()
	size := uint32(1) << (bits - ones)
	// Skip the network address and .1 (a gateway by habit), and the broadcast.
	return &ipPool{first: binary.BigEndian.Uint32(n.IP.To4()) + 2, size: size - 3, used: map[uint32]types.UID{}}, nil
}

func (p *ipPool) toIP(i uint32) string {
	b := make(net.IP, 4)
	binary.BigEndian.PutUint32(b, p.first+i)
	return b.String()
}

// allocate gives the pod an address, its previous one when still free (a pod
// keeps its IP across an agent restart).
func (p *ipPool) allocate(uid types.UID, prefer string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ip := net.ParseIP(prefer).To4(); ip != nil {
		i := binary.BigEndian.Uint32(ip) - p.first
		if i < p.size {
			if owner, taken := p.used[i]; !taken || owner == uid {
				p.used[i] = uid
				return prefer, nil
			}
		}
	}
	for n := uint32(0); n < p.size; n++ {
		i := (p.next + n) % p.size
		if _, taken := p.used[i]; !taken {
			p.used[i] = uid
			p.next = i + 1
			return p.toIP(i), nil
		}
	}
	return "", fmt.Errorf("pod CIDR exhausted: all %d addresses in use", p.size)
}

func (p *ipPool) release(ip string) {
	addr := net.ParseIP(ip).To4()
	if addr == nil {
		return
	}
	p.mu.Lock()
	delete(p.used, binary.BigEndian.Uint32(addr)-p.first)
	p.mu.Unlock()
}
