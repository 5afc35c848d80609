/* Test-only: Wine 8 (Debian 12's) has no bcryptprimitives.dll, whose ProcessPrng the Rust
 * standard library calls on Windows 10 and later. wine-smoke.sh builds this stand-in beside a
 * copy of kotodama.exe in its own temp folder, so the real binary runs under that Wine. It is
 * never shipped: every Windows that Rust supports has the real DLL. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom, advapi32 */

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
  while (length > 0) {
    ULONG part = length > 0x40000000 ? 0x40000000 : (ULONG)length;
    if (!SystemFunction036(data, part)) return FALSE;
    data += part;
    length -= part;
  }
  return TRUE;
}
