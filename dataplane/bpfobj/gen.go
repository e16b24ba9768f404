package bpfobj

// The BPF objects are compiled from bpf/ with Debian's clang and committed;
// `make generate` redoes it and `make test` fails when they are stale.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpfobj -type lb4_key -type lb4_service -type lb4_backend -type lb4_reverse_nat -type lb_affinity_key -type lb_affinity_val -type sock_revnat4_key -type sock_revnat4_val -type lb_traffic_key -type lb_traffic_val sockLB ../../bpf/sock_lb.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpfobj -type endpoint_info -type np_ct_key -type np_ct_val -type tunnel_key -type tunnel_info -type ipcache_key -type ipcache_val -type pol_ep_val -type pol_key -type pol_val -type pol_ct_key -type pol_ct_val -type pol_event tcPod ../../bpf/tc_pod.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpfobj tcNodePort ../../bpf/tc_nodeport.c
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpfobj tcTunnel ../../bpf/tc_tunnel.c
