// Holds every packet of netfilter queue 0 for DELAY_MS milliseconds, then lets it through: a fixed
// one-way delay for the multi-host tests on a kernel without netem. Packets leave in arrival order.
//   delay DELAY_MS        (run inside the host's namespace, beside `iptables ... -j NFQUEUE`)
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CAPACITY 65536
static uint32_t ids[CAPACITY];
static double due[CAPACITY];
static unsigned head, tail;
static double delay;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int on_packet(struct nfq_q_handle *q, struct nfgenmsg *m, struct nfq_data *d, void *unused) {
    (void)m; (void)unused;
    struct nfqnl_msg_packet_hdr *h = nfq_get_msg_packet_hdr(d);
    if (!h) return 0;
    uint32_t id = ntohl(h->packet_id);
    if (tail - head >= CAPACITY) return nfq_set_verdict(q, id, NF_ACCEPT, 0, NULL);   // full: no delay
    ids[tail % CAPACITY] = id;
    due[tail % CAPACITY] = now() + delay;
    tail++;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: delay DELAY_MS\n"); return 2; }
    delay = atof(argv[1]) / 1000;
    struct nfq_handle *h = nfq_open();
    if (!h) { perror("nfq_open"); return 1; }
    struct nfq_q_handle *q = nfq_create_queue(h, 0, on_packet, NULL);
    if (!q) { perror("nfq_create_queue"); return 1; }
    if (nfq_set_mode(q, NFQNL_COPY_META, 0) < 0) { perror("nfq_set_mode"); return 1; }
    nfq_set_queue_maxlen(q, CAPACITY);
    int fd = nfq_fd(h);
    char buffer[65536];
    for (;;) {
        double t = now();
        while (head != tail && due[head % CAPACITY] <= t) {
            nfq_set_verdict(q, ids[head % CAPACITY], NF_ACCEPT, 0, NULL);
            head++;
        }
        int wait = head == tail ? 1000 : (int)((due[head % CAPACITY] - t) * 1000) + 1;
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, wait) > 0) {
            ssize_t n = recv(fd, buffer, sizeof buffer, 0);
            if (n > 0) nfq_handle_packet(h, buffer, (int)n);
            else if (n < 0 && errno != ENOBUFS && errno != EINTR) { perror("recv"); return 1; }
        }
    }
}
