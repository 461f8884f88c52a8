/* layer_link.c — the program of the layer_link_* targets (CMakeLists.txt): a layer's
 * library is linked whole with nothing but the layers below it, so a call from the
 * layer into a higher one is an undefined reference at build time. */
int main(void) { return 0; }
