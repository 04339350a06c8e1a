/* icuuc.dll for the Windows lane only (never shipped): Qt6Core imports these 20 ICU
 * converter functions from Windows 10's system ICU, which Wine does not provide, so
 * Qt6Core.dll would not load at all. Qt reaches them only for legacy (non-UTF) text
 * codecs: every converter open fails cleanly, so Qt falls back to its own UTF codecs.
 * Built by setup.sh with x86_64-w64-mingw32-gcc. */
#include <stddef.h>
#include <stdint.h>

#define EXPORT __declspec(dllexport)
typedef int32_t UErrorCode;
enum { U_FILE_ACCESS_ERROR = 4 };

static void fail(UErrorCode *err) { if (err && *err <= 0) *err = U_FILE_ACCESS_ERROR; }

EXPORT void *ucnv_open(const char *name, UErrorCode *err) { (void)name; fail(err); return NULL; }
EXPORT void ucnv_close(void *cnv) { (void)cnv; }
EXPORT void ucnv_reset(void *cnv) { (void)cnv; }
EXPORT int8_t ucnv_getMaxCharSize(const void *cnv) { (void)cnv; return 1; }
EXPORT const char *ucnv_getName(const void *cnv, UErrorCode *err) { (void)cnv; fail(err); return NULL; }
EXPORT int32_t ucnv_countAvailable(void) { return 0; }
EXPORT const char *ucnv_getAvailableName(int32_t n) { (void)n; return NULL; }
EXPORT const char *ucnv_getStandardName(const char *name, const char *standard, UErrorCode *err)
{ (void)name; (void)standard; fail(err); return NULL; }
EXPORT int32_t ucnv_toUCountPending(const void *cnv, UErrorCode *err) { (void)cnv; fail(err); return 0; }
EXPORT int32_t ucnv_fromUCountPending(const void *cnv, UErrorCode *err) { (void)cnv; fail(err); return 0; }

/* The callback setters and getters, the conversions and the callbacks themselves take
 * more arguments; under the Windows x64 calling convention a stub that reads none of
 * them is safe. Each reports failure through its last UErrorCode* where it has one. */
#define STUB(name) EXPORT void name(void) {}
STUB(ucnv_getToUCallBack)
STUB(ucnv_getFromUCallBack)
STUB(UCNV_FROM_U_CALLBACK_SUBSTITUTE)
STUB(UCNV_TO_U_CALLBACK_SUBSTITUTE)
STUB(ucnv_cbToUWriteUChars)
STUB(ucnv_cbFromUWriteUChars)
EXPORT void ucnv_setToUCallBack(void *c, void *a, const void *b, void *d, const void **e, UErrorCode *err)
{ (void)c; (void)a; (void)b; (void)d; (void)e; fail(err); }
EXPORT void ucnv_setFromUCallBack(void *c, void *a, const void *b, void *d, const void **e, UErrorCode *err)
{ (void)c; (void)a; (void)b; (void)d; (void)e; fail(err); }
EXPORT void ucnv_toUnicode(void *c, void *t, const void *tl, const char **s, const char *sl,
                           int32_t *o, int8_t flush, UErrorCode *err)
{ (void)c; (void)t; (void)tl; (void)s; (void)sl; (void)o; (void)flush; fail(err); }
EXPORT void ucnv_fromUnicode(void *c, char **t, const char *tl, const void **s, const void *sl,
                             int32_t *o, int8_t flush, UErrorCode *err)
{ (void)c; (void)t; (void)tl; (void)s; (void)sl; (void)o; (void)flush; fail(err); }
