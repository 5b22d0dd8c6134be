// TCP round-trip time, connect latency, retransmits and resets from the
// tcp_probe, inet_sock_set_state, tcp_retransmit_skb, tcp_send_reset and
// tcp_receive_reset tracepoints (bpf/tcp.bpf.c): per node and per cgroup.
#pragma once

#include "collectors/collector.h"

namespace nodeperf {

extern const CollectorFactory kTcpCollector;

}  // namespace nodeperf
