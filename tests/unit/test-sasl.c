/* test-sasl: not written yet */
int main(void)
{
    return 77;
}
