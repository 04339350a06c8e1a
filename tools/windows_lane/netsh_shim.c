/* netsh.exe for the Windows lane only (never shipped). Wine's netsh is a stub that prints
 * nothing, so PortPressure would fall back to the Windows default range 49152-65535 while the
 * sockets it reads come from the Linux kernel of the lane's network namespace. This shim
 * answers the two read-only questions the product asks, in real netsh's words, with what that
 * kernel uses: the dynamic port range is net.ipv4.ip_local_port_range and no port is excluded.
 * Anything else fails as real netsh does for an unknown command. Built by setup.sh. */
#include <stdio.h>
#include <string.h>

static int is(const char *a, const char *b) { return _stricmp(a, b) == 0; }

static int show_dynamic(void)
{
    unsigned first = 0, last = 0;
    FILE *f = fopen("Z:\\proc\\sys\\net\\ipv4\\ip_local_port_range", "r");
    if (!f || fscanf(f, "%u %u", &first, &last) != 2 || last < first) {
        if (f) fclose(f);
        printf("The lane's netsh could not read ip_local_port_range.\n");
        return 1;
    }
    fclose(f);
    printf("\nProtocol tcp Dynamic Port Range\n---------------------------------\n"
           "Start Port      : %u\nNumber of Ports : %u\n\n", first, last - first + 1);
    return 0;
}

int main(int argc, char **argv)
{
    /* (stdout is in text mode: each \n goes out as \r\n, as from real netsh.) */
    /* interface ipv4|ipv6 show dynamicport tcp | interface ipv4 show excludedportrange protocol=tcp */
    if (argc >= 5 && (is(argv[1], "interface") || is(argv[1], "int")) && is(argv[3], "show")) {
        if (argc == 6 && is(argv[4], "dynamicport") && is(argv[5], "tcp"))
            return show_dynamic();
        if (argc == 6 && is(argv[4], "excludedportrange") && is(argv[5], "protocol=tcp")) {
            printf("\nProtocol tcp Port Exclusion Ranges\n\nStart Port    End Port\n"
                   "----------    --------\n\n* - Administered port exclusions.\n\n");
            return 0;
        }
    }
    printf("The following command was not found: ");
    for (int i = 1; i < argc; i++) printf("%s%s", argv[i], i + 1 < argc ? " " : ".\n");
    return 1;
}
