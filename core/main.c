/* main.c — process entry point (placeholder until the worker lands). */
int main(void) { return 0; }
