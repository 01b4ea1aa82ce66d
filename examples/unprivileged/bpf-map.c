// bpf-map: read and update one element of a pinned eBPF map, as an ordinary user.
//
// bpfd pins a program's maps into a bpffs mounted for an application (bpfd bpffs create/share);
// the application needs no capability to use them, only the file permissions of the pin. This
// is all it takes: bpf_obj_get() on the pin, then lookups and updates on the fd it returns.
//
//   bpf-map get PIN KEY          print the value at KEY (opens the pin read-only)
//   bpf-map set PIN KEY HEX      write HEX (little-endian bytes) at KEY (opens it read-write)
//   bpf-map info PIN             print the map's id, type, key and value sizes
//
// KEY is a decimal number written into the map's key size (4 or 8 bytes, little-endian).
// Errors print the errno's name (EACCES, EPERM, ENOENT) so scripts can branch on them; the exit
// status is 1 for a failed call and 2 for bad usage.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>

static const char *errno_name(int e)
{
	switch (e) {
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case EINVAL: return "EINVAL";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	default: return "errno";
	}
}

static int fail(const char *what, const char *pin, int err)
{
	if (err < 0)
		err = -err;
	fprintf(stderr, "bpf-map: %s %s: %s (%s)\n", what, pin, errno_name(err), strerror(err));
	return 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: bpf-map get PIN KEY | set PIN KEY HEX | info PIN\n");
	return 2;
}

static int open_pin(const char *pin, int read_only, struct bpf_map_info *info)
{
	LIBBPF_OPTS(bpf_obj_get_opts, opts, .file_flags = read_only ? BPF_F_RDONLY : 0);
	__u32 len = sizeof(*info);
	int fd = bpf_obj_get_opts(pin, &opts);

	if (fd < 0)
		return -errno;
	memset(info, 0, sizeof(*info));
	if (bpf_map_get_info_by_fd(fd, info, &len) < 0)
		return -errno;
	return fd;
}

static int parse_hex(const char *hex, uint8_t *out, size_t size)
{
	if (strlen(hex) != size * 2)
		return -1;
	for (size_t i = 0; i < size; i++) {
		unsigned int b;
		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -1;
		out[i] = (uint8_t)b;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct bpf_map_info info;
	uint8_t key[8] = {0};
	uint8_t *value;
	int fd, set;

	if (argc < 3)
		return usage();
	if (strcmp(argv[1], "info") == 0) {
		fd = open_pin(argv[2], 1, &info);
		if (fd < 0)
			return fail("open", argv[2], fd);
		printf("id %u type %u key_size %u value_size %u max_entries %u name %s\n", info.id, info.type,
		       info.key_size, info.value_size, info.max_entries, info.name);
		return 0;
	}
	set = strcmp(argv[1], "set") == 0;
	if ((!set && strcmp(argv[1], "get") != 0) || argc != (set ? 5 : 4))
		return usage();
	fd = open_pin(argv[2], !set, &info);
	if (fd < 0)
		return fail("open", argv[2], fd);
	if (info.key_size != 4 && info.key_size != 8) {
		fprintf(stderr, "bpf-map: %s has %u-byte keys; this example takes 4 or 8\n", argv[2], info.key_size);
		return 2;
	}
	uint64_t k = strtoull(argv[3], NULL, 10);
	memcpy(key, &k, info.key_size); /* little-endian host, like the program */
	value = calloc(1, info.value_size);
	if (!value)
		return 1;
	if (set) {
		if (parse_hex(argv[4], value, info.value_size) < 0) {
			fprintf(stderr, "bpf-map: give the value as %u hex bytes\n", info.value_size);
			return 2;
		}
		if (bpf_map_update_elem(fd, key, value, BPF_ANY) < 0)
			return fail("update", argv[2], -errno);
		printf("updated key %llu\n", (unsigned long long)k);
		return 0;
	}
	if (bpf_map_lookup_elem(fd, key, value) < 0)
		return fail("look up", argv[2], -errno);
	printf("key %llu value ", (unsigned long long)k);
	for (__u32 i = 0; i < info.value_size; i++)
		printf("%02x", value[i]);
	if (info.value_size == 4 || info.value_size == 8) {
		uint64_t n = 0;
		memcpy(&n, value, info.value_size);
		printf(" (%llu)", (unsigned long long)n);
	}
	printf("\n");
	return 0;
}
