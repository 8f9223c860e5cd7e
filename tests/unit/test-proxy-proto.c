/* test-proxy-proto: not written yet */
int main(void)
{
    return 77;
}
