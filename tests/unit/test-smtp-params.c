/* test-smtp-params: not written yet */
int main(void)
{
    return 77;
}
