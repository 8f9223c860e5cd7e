/* test-config: not written yet */
int main(void)
{
    return 77;
}
